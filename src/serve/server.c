// server.c: `dalle serve` (server.h). One thread per connection (libmicrohttpd);
// a generation request takes a queue slot (429 when none is free), then the
// model's lock, so requests run one at a time in arrival order of the lock.
#include <cJSON.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/image.h"
#include "dalle/dalle.h"
#include "serve/server.h"

serve_opts serve_default_opts(void) { return (serve_opts){NULL, "127.0.0.1", 8080, "web", 4, 16, 65536}; }

typedef struct {
    const serve_opts *o;
    dalle_model *m;
    int S;
    pthread_mutex_t model_lock, state_lock;
    int queued;       // admitted requests, running or waiting
    int busy, done, total;
} server;

typedef struct {
    char *body;
    size_t len;
    int too_large;
} request;

// ---------------------------------------------------------------- responses

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len,
                             int copy) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_MUST_FREE);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, cJSON *j) {
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return MHD_NO;
    // cJSON's allocator is malloc: MHD frees the buffer with free()
    return reply(c, status, "application/json", text, strlen(text), 0);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *type, const char *msg) {
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    return reply_json(c, status, j);
}

static char *base64(const uint8_t *p, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = dalle_malloc(4 * ((n + 2) / 3) + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *q++ = A[v >> 18 & 63];
        *q++ = A[v >> 12 & 63];
        *q++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? A[v & 63] : '=';
    }
    *q = 0;
    return o;
}

// ---------------------------------------------------------------- handlers

static void on_progress(void *user, int done, int total) {
    server *s = user;
    pthread_mutex_lock(&s->state_lock);
    s->done = done;
    s->total = total;
    pthread_mutex_unlock(&s->state_lock);
}

static enum MHD_Result generations(server *s, struct MHD_Connection *c, const request *rq) {
    if (rq->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body over %lld bytes", (long long)s->o->max_body);
        return reply_error(c, 413, "invalid_request_error", msg);
    }
    cJSON *j = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "invalid_request_error", "the body is not a JSON object");
    }
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt"), *n = cJSON_GetObjectItemCaseSensitive(j, "n"),
                *size = cJSON_GetObjectItemCaseSensitive(j, "size"),
                *fmt = cJSON_GetObjectItemCaseSensitive(j, "response_format"),
                *seed = cJSON_GetObjectItemCaseSensitive(j, "seed"),
                *temp = cJSON_GetObjectItemCaseSensitive(j, "temperature"),
                *topk = cJSON_GetObjectItemCaseSensitive(j, "top_k"), *topp = cJSON_GetObjectItemCaseSensitive(j, "top_p"),
                *cand = cJSON_GetObjectItemCaseSensitive(j, "candidates"),
                *guid = cJSON_GetObjectItemCaseSensitive(j, "guidance");
    char msg[160], want_size[32];
    snprintf(want_size, sizeof want_size, "%dx%d", s->S, s->S);
    const char *err = NULL;
    if (!cJSON_IsString(prompt)) err = "'prompt' must be a string";
    else if (n && (!cJSON_IsNumber(n) || n->valuedouble != (int)n->valuedouble || n->valueint < 1 ||
                   n->valueint > s->o->max_n)) {
        snprintf(msg, sizeof msg, "'n' must be an integer in [1, %d]", s->o->max_n);
        err = msg;
    } else if (cand && (!cJSON_IsNumber(cand) || cand->valuedouble != (int)cand->valuedouble || cand->valueint < 0 ||
                        cand->valueint > s->o->max_n)) {
        snprintf(msg, sizeof msg, "'candidates' must be an integer in [0, %d]", s->o->max_n);
        err = msg;
    } else if (cand && cand->valueint > (n ? n->valueint : 1) && !dalle_model_can_rerank(s->m)) {
        err = "'candidates' > 'n' needs a reranker, and this model has none (clip.safetensors)";
    } else if (size && (!cJSON_IsString(size) || strcmp(size->valuestring, want_size))) {
        snprintf(msg, sizeof msg, "'size' must be \"%s\" for this model", want_size);
        err = msg;
    } else if (fmt && (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "b64_json")))
        err = "'response_format' must be \"b64_json\" (this server keeps no files to link to)";
    else if ((seed && !cJSON_IsNumber(seed)) || (temp && (!cJSON_IsNumber(temp) || temp->valuedouble <= 0)) ||
             (topk && !cJSON_IsNumber(topk)) || (topp && (!cJSON_IsNumber(topp) || topp->valuedouble <= 0)))
        err = "'seed', 'temperature', 'top_k' and 'top_p' must be numbers (temperature, top_p > 0)";
    else if (guid && (!cJSON_IsNumber(guid) || !(guid->valuedouble >= 0 && guid->valuedouble <= 100)))
        err = "'guidance' must be a number in [0, 100] (1: off; default: the model's)";
    if (err) {
        cJSON_Delete(j);
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "invalid_request_error", err);
    }
    dalle_gen_params p = dalle_gen_default_params();
    p.n = n ? n->valueint : 1;
    if (cand) p.candidates = cand->valueint;
    if (seed) p.seed = (uint64_t)seed->valuedouble;
    if (temp) p.temperature = (float)temp->valuedouble;
    if (topk) p.top_k = topk->valueint;
    if (topp) p.top_p = (float)topp->valuedouble;
    p.guidance = guid ? (float)guid->valuedouble : dalle_model_guidance(s->m);
    p.on_progress = on_progress;
    p.user = s;
    char *caption = dalle_strdup(prompt->valuestring);
    cJSON_Delete(j);
    if (!caption) return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "server_error", "out of memory");
    // Admission: a queue slot, or 429.
    pthread_mutex_lock(&s->state_lock);
    int admitted = s->queued < s->o->queue;
    if (admitted) s->queued++;
    pthread_mutex_unlock(&s->state_lock);
    if (!admitted) {
        dalle_free(caption);
        return reply_error(c, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limit_error", "the queue is full; try again later");
    }
    size_t per = (size_t)s->S * s->S * 3;
    uint8_t *px = dalle_malloc(per * (size_t)p.n);
    pthread_mutex_lock(&s->model_lock);
    pthread_mutex_lock(&s->state_lock);
    s->busy = 1, s->done = 0, s->total = 0;
    pthread_mutex_unlock(&s->state_lock);
    int rc = px ? dalle_generate(s->m, caption, &p, px) : DALLE_ERR;
    pthread_mutex_lock(&s->state_lock);
    s->busy = 0;
    s->queued--;
    pthread_mutex_unlock(&s->state_lock);
    pthread_mutex_unlock(&s->model_lock);
    dalle_free(caption);
    if (rc != DALLE_OK) {
        dalle_free(px);
        return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "server_error", dalle_last_error());
    }
    cJSON *out = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(out, "data");
    cJSON_AddNumberToObject(out, "created", (double)time(NULL));
    for (int k = 0; k < p.n; k++) {
        image_t img = {s->S, s->S, px + per * (size_t)k};
        uint8_t *png;
        size_t len;
        char *b64 = NULL;
        if (image_encode_png(&img, &png, &len) == DALLE_OK) {
            b64 = base64(png, len);
            dalle_free(png);
        }
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "b64_json", b64 ? b64 : "");
        dalle_free(b64);
        cJSON_AddItemToArray(data, item);
    }
    dalle_free(px);
    return reply_json(c, MHD_HTTP_OK, out);
}

// The page's files: only these names, from the web folder.
static enum MHD_Result static_file(server *s, struct MHD_Connection *c, const char *url) {
    static const struct {
        const char *url, *file, *type;
    } F[] = {{"/", "index.html", "text/html; charset=utf-8"},
             {"/index.html", "index.html", "text/html; charset=utf-8"},
             {"/app.js", "app.js", "text/javascript; charset=utf-8"},
             {"/style.css", "style.css", "text/css; charset=utf-8"},
             {"/test.html", "test.html", "text/html; charset=utf-8"}};
    for (size_t i = 0; i < sizeof F / sizeof *F; i++) {
        if (strcmp(url, F[i].url)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", s->o->web, F[i].file);
        size_t len;
        char *text = dalle_read_file(path, &len);
        if (!text) return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", dalle_last_error());
        enum MHD_Result r = reply(c, MHD_HTTP_OK, F[i].type, text, len, 1);
        dalle_free(text);
        return r;
    }
    return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no such page");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    if (!strcmp(method, "POST")) {
        request *rq = *con_cls;
        if (!rq) { // first call: headers only
            if (!(rq = dalle_calloc(1, sizeof *rq))) return MHD_NO;
            *con_cls = rq;
            return MHD_YES;
        }
        if (*upload_size) { // a piece of the body
            if (!rq->too_large && rq->len + *upload_size > (size_t)s->o->max_body) {
                rq->too_large = 1;
            } else if (!rq->too_large) {
                char *b = dalle_realloc(rq->body, rq->len + *upload_size + 1);
                if (!b) return MHD_NO;
                memcpy(b + rq->len, upload, *upload_size);
                rq->body = b;
                rq->len += *upload_size;
                rq->body[rq->len] = 0;
            }
            *upload_size = 0;
            return MHD_YES;
        }
        if (!strcmp(url, "/v1/images/generations")) return generations(s, c, rq);
        return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "POST /v1/images/generations is the only POST");
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request_error", "GET or POST only");
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/progress")) {
        cJSON *j = cJSON_CreateObject();
        pthread_mutex_lock(&s->state_lock);
        if (url[1] == 'h') {
            cJSON_AddStringToObject(j, "status", "ok");
            cJSON_AddStringToObject(j, "model", s->o->model);
            cJSON_AddNumberToObject(j, "image_size", s->S);
            cJSON_AddBoolToObject(j, "reranker", dalle_model_can_rerank(s->m));
            cJSON_AddNumberToObject(j, "guidance", dalle_model_guidance(s->m));
        } else {
            cJSON_AddBoolToObject(j, "busy", s->busy);
            cJSON_AddNumberToObject(j, "done", s->done);
            cJSON_AddNumberToObject(j, "total", s->total);
        }
        cJSON_AddNumberToObject(j, "queued", s->queued);
        pthread_mutex_unlock(&s->state_lock);
        return reply_json(c, MHD_HTTP_OK, j);
    }
    return static_file(s, c, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
    (void)cls, (void)c, (void)t;
    request *rq = *con_cls;
    if (rq) {
        dalle_free(rq->body);
        dalle_free(rq);
        *con_cls = NULL;
    }
}

int serve_run(const serve_opts *o) {
    server s = {.o = o};
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (o->port < 1 || o->port > 65535 || inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
        return dalle_seterr("serve: --host %s --port %d is not an IPv4 address and port", o->host, o->port);
    if (o->queue < 1 || o->max_n < 1 || o->max_body < 64)
        return dalle_seterr("serve: --queue, --max-n must be positive and --max-body at least 64");
    if (!(s.m = dalle_model_load(o->model))) return DALLE_ERR;
    s.S = dalle_model_image_size(s.m);
    pthread_mutex_init(&s.model_lock, NULL);
    pthread_mutex_init(&s.state_lock, NULL);
    // Block the stop signals here; threads started from now on inherit the
    // mask, and this thread waits for them with sigwait.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)o->port, NULL,
                         NULL, handler, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
                         completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->queue + 32),
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    if (!d) {
        dalle_model_free(s.m);
        return dalle_seterr("serve: cannot listen on %s:%d (in use?)", o->host, o->port);
    }
    fprintf(stderr, "dalle: serving %s on http://%s:%d/ (Ctrl-C stops)\n", o->model, o->host, o->port);
    int sig;
    sigwait(&stop, &sig);
    fprintf(stderr, "dalle: serve: stopping\n");
    MHD_stop_daemon(d);
    pthread_mutex_destroy(&s.model_lock);
    pthread_mutex_destroy(&s.state_lock);
    dalle_model_free(s.m);
    return DALLE_OK;
}
