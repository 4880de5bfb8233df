# bpe_ref.py: the reference side of bench/bench_bpe.c, one thread each.
#   RAYON_NUM_THREADS=1 python3 bench/bpe_ref.py CORPUS TOKENIZER_JSON REPEATS [TRAIN_CORPUS VOCAB]
# Encodes every line of CORPUS with
#   tiktoken: an Encoding built from TOKENIZER_JSON's vocabulary (its ranks are
#             the ids, which tiktoken's merge rule turns into the same merges)
#             and the same split pattern; it gets the raw lines (it does not
#             normalise), so it does less work than dalle.c;
#   tokenizers: the Hugging Face library loading TOKENIZER_JSON itself.
# With TRAIN_CORPUS, also times the library's BpeTrainer on it (same
# normaliser and split). Prints one JSON line of MB/s and seconds.
import json
import sys
import time

import tiktoken
import tokenizers

PAT = r" ?'s| ?'t| ?'re| ?'ve| ?'m| ?'ll| ?'d| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+"


def byte_decoder():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def best(repeats, fn):
    t_best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best


def main():
    corpus, tok_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = open(corpus, "rb").read()
    lines = data.decode("utf-8", errors="replace").split("\n")
    mb = len(data) / 1e6
    vocab = json.load(open(tok_path))["model"]["vocab"]
    bd = byte_decoder()
    ranks = {bytes(bd[c] for c in tok): i for tok, i in vocab.items()}
    enc = tiktoken.Encoding("dalle-bench", pat_str=PAT, mergeable_ranks=ranks, special_tokens={})
    hf = tokenizers.Tokenizer.from_file(tok_path)
    out = {}
    # Same ids as the library on normalised text (a check that the comparison is like for like).
    sample = lines[::97]
    norm = [hf.normalizer.normalize_str(s) for s in sample]
    hf_ids = [e.ids for e in hf.encode_batch(sample, add_special_tokens=False)]
    out["tiktoken_same_ids"] = int(all(enc.encode_ordinary(n) == h for n, h in zip(norm, hf_ids)))
    t = best(repeats, lambda: [enc.encode_ordinary(s) for s in lines])
    out["tiktoken_mbps"] = mb / t
    t = best(repeats, lambda: hf.encode_batch(lines, add_special_tokens=False))
    out["tokenizers_mbps"] = mb / t
    if len(sys.argv) > 5:
        train_corpus, v = sys.argv[4], int(sys.argv[5])
        tr = tokenizers.Tokenizer(tokenizers.models.BPE())
        tr.normalizer = hf.normalizer
        tr.pre_tokenizer = hf.pre_tokenizer
        trainer = tokenizers.trainers.BpeTrainer(vocab_size=v, min_frequency=2, show_progress=False,
                                                 initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
        t = time.perf_counter()
        tr.train([train_corpus], trainer)
        out["tokenizers_train_s"] = time.perf_counter() - t
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
