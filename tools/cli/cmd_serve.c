// cmd_serve.c: `dalle serve`: the local web app and HTTP API (src/serve/server.h).
#include <stdio.h>

#include "cli.h"
#include "opts.h"
#include "serve/server.h"

int cmd_serve(int argc, char **argv) {
    serve_opts o = serve_default_opts();
    opt_t opts[] = {
        {"--model,-m", OPT_STR, &o.model, "model directory (required)"},
        {"--host", OPT_STR, &o.host, "address to listen on (the default is loopback only)"},
        {"--port", OPT_INT, &o.port, "TCP port"},
        {"--web", OPT_STR, &o.web, "folder of the page's files (index.html, app.js, style.css)"},
        {"--queue", OPT_INT, &o.queue, "generation requests admitted at once; more get 429"},
        {"--max-n", OPT_INT, &o.max_n, "most images (and candidates to rerank) per request"},
        {"--max-body", OPT_I64, &o.max_body, "largest request body in bytes; more gets 413"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle serve --model DIR [--host 127.0.0.1] [--port 8080]\n"
                         "The page at /, OpenAI's POST /v1/images/generations (b64_json), GET /health.",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!o.model || npos) {
        fprintf(stderr, "dalle: serve: needs --model DIR\n");
        return 2;
    }
    return serve_run(&o) ? cli_fail() : 0;
}
