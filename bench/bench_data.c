// bench_data.c: the data pipeline's throughput on this machine.
//   build/bench/bench_data [IMAGES]   (from the repository root; default 300)
// build:    PNGs of 256x256 (written here, random content) + captions -> a
//           64x64 dataset (load, filters, area resize, crop, dedupe), images/s;
// tokenize: that dataset -> shards with the shipped dVAE (models/) and a
//           tokenizer trained here, records/s;
// loader:   shard records through the loader (shuffled order), examples/s,
//           against a `small` prior training step's need.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/image.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "data/build.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenize.h"

static void die(const char *what) {
    fprintf(stderr, "bench_data: %s: %s\n", what, dalle_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 300;
    char dir[128], path[512];
    snprintf(dir, sizeof dir, "/tmp/dalle-bench-data-%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/img", dir);
    mkdir(path, 0755);
    // Images: smooth random gradients plus noise (PNG compresses them like photos, roughly).
    image_t img = {0};
    if (image_alloc(&img, 256, 256)) die("alloc");
    char caps[512];
    snprintf(caps, sizeof caps, "%s/captions.tsv", dir);
    FILE *f = fopen(caps, "w");
    if (!f) die("captions");
    for (int i = 0; i < n; i++) {
        uint32_t w[4];
        philox4x32(7, 0, (uint64_t)i, w);
        for (int y = 0; y < 256; y++)
            for (int x = 0; x < 256; x++)
                for (int c = 0; c < 3; c++) {
                    uint32_t r[4];
                    philox4x32(7, (uint64_t)i + 1, (uint64_t)(y * 256 + x), r);
                    int v = (int)((w[c] >> 24) * x / 256 + (w[c] >> 16 & 255) * y / 256) / 2 + (int)(r[c] & 15);
                    img.data[(y * 256 + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
                }
        snprintf(path, sizeof path, "%s/img/%05d.png", dir, i);
        if (image_save_png(path, &img)) die("png");
        fprintf(f, "%05d.png\ta photo of a random gradient number %d\n%05d.png\tgradient %d in a square\n", i, i, i, i);
    }
    fclose(f);
    image_free(&img);

    char ds[512], shards[512], tok[512], corpus[512];
    snprintf(ds, sizeof ds, "%s/d.dset", dir);
    data_build_opts bo = data_build_defaults(64);
    snprintf(path, sizeof path, "%s/img", dir);
    bo.images = path, bo.captions = caps, bo.out = ds;
    data_build_report rep;
    double t0 = dalle_time();
    if (data_build(&bo, &rep)) die("build");
    double t_build = dalle_time() - t0;

    snprintf(corpus, sizeof corpus, "%s/captions.tsv", dir);
    snprintf(tok, sizeof tok, "%s/tok.json", dir);
    const char *paths[] = {corpus};
    bpe_train_opts to = {512, 2};
    bpe_tokenizer *t = bpe_train(paths, 1, &to);
    if (!t || bpe_save(t, tok)) die("tokenizer");
    bpe_free(t);
    snprintf(shards, sizeof shards, "%s/s.dshard", dir);
    data_tokenize_opts ko = data_tokenize_defaults();
    ko.dataset = ds, ko.dvae = "models/dvae-icons.safetensors", ko.tokenizer = tok, ko.out = shards;
    ko.text_len = 32;
    ko.split = -1;
    t0 = dalle_time();
    int64_t recs = data_tokenize(&ko);
    if (recs < 0) die("tokenize");
    double t_tok = dalle_time() - t0;

    shard *s = shard_open(shards);
    if (!s) die("shard");
    const shard_info *si = shard_get_info(s);
    loader l;
    if (loader_init(&l, si->n_records, 1, 0, 1)) die("loader");
    int32_t *text = malloc(sizeof(int32_t) * (size_t)si->text_len), *codes = malloc(sizeof(int32_t) * (size_t)si->n_image);
    int64_t reps = 2000000;
    uint64_t sum = 0;
    t0 = dalle_time();
    for (int64_t p = 0; p < reps; p++) {
        shard_read(s, loader_item(&l, p), text, codes);
        sum += (uint64_t)text[0] + (uint64_t)codes[0];
    }
    double t_load = dalle_time() - t0;
    printf("bench_data: %d PNGs of 256x256, %d threads\n", n, 0 ? 0 : (int)sysconf(_SC_NPROCESSORS_ONLN));
    printf("  build     %7.1f images/s  (%lld written, 64x64: load, filters, area resize, dedupe, checksum)\n",
           (double)n / t_build, (long long)rep.written);
    printf("  tokenize  %7.1f records/s (%lld records: BPE layout, the small dVAE's encoder at 64x64)\n",
           (double)recs / t_tok, (long long)recs);
    printf("  loader    %7.2f M examples/s (shuffled, from the mapped shard; a `small` prior step of 8 needs 8 "
           "every ~0.3 s)\n",
           (double)reps / t_load / 1e6);
    (void)sum;
    shard_close(s);
    loader_free(&l);
    free(text), free(codes);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return 0;
}
