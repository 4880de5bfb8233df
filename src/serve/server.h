// server.h: `dalle serve`: a local web app and an HTTP API over one model,
// on libmicrohttpd.
//   GET  /                           the page (web/index.html, app.js, style.css)
//   GET  /health                     {"status": "ok", "model": ..., "image_size": S, "reranker": r,
//                                    "queued": k} (r: the model has clip.safetensors)
//   GET  /v1/progress                {"busy": b, "done": d, "total": t, "queued": k}
//   POST /v1/images/generations      OpenAI's images API: {"prompt", "n", "size", "response_format":
//                                    "b64_json"} (+ seed, temperature, top_k, top_p, and candidates:
//                                    > n draws that many, keeps the n best by the model's reranker) ->
//                                    {"created": t, "data": [{"b64_json": PNG}, ...]}
// Requests run one at a time (the model is single-threaded) from a bounded
// queue: over the bound -> 429; bad JSON or fields -> 400, a body over the
// limit -> 413, each with {"error": {"message", "type"}}. The server keeps
// serving after any of them.
#pragma once
#include <stdint.h>

typedef struct {
    const char *model;  // model directory
    const char *host;   // address to bind (127.0.0.1: loopback only)
    int port;
    const char *web;    // folder of the page's files
    int queue;          // requests admitted at once (running + waiting)
    int max_n;          // most images (and candidates) per request
    int64_t max_body;   // bytes
} serve_opts;

serve_opts serve_default_opts(void);
// Serves until SIGINT or SIGTERM. DALLE_ERR (message set) if the model does
// not load or the address cannot be bound; DALLE_OK after a signal.
int serve_run(const serve_opts *o);
