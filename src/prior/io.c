// io.c: prior files. A model file is safetensors with the parameters under
// their names (docs/prior.md) and metadata "dalle.kind" = "prior",
// "prior.config" = the config as JSON. A training checkpoint
// (src/prior/train.c) has the same tensors plus "ema.*", "adam.m.*",
// "adam.v.*" and its training state; prior_load reads either.
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"
#include "dalle/dalle.h"
#include "prior/model.h"

int prior_write_meta(const prior_config *cfg, st_writer *w, const char *kind) {
    char *js = prior_config_to_json(cfg);
    if (!js) return DALLE_ERR;
    int rc = st_writer_meta(w, "dalle.kind", kind) || st_writer_meta(w, "dalle.version", "1") ||
             st_writer_meta(w, "prior.config", js);
    dalle_free(js);
    return rc ? DALLE_ERR : DALLE_OK;
}

int prior_add_tensors(const prior_model *m, st_writer *w, const char *prefix, const float *src, st_dtype dtype) {
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        char name[PRIOR_NAME_LEN + 16];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        if (st_writer_add(w, name, dtype, src + t->offset, t->ndim, t->shape)) return DALLE_ERR;
    }
    return DALLE_OK;
}

int prior_read_tensors(const prior_model *m, const st_file *f, const char *prefix, float *dst) {
    backend_sync(); // dst may be backend memory an op still writes (zeroing, a gradient)
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        char name[PRIOR_NAME_LEN + 16];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        if (st_read_f32(f, name, dst + t->offset, t->ndim, t->shape)) return DALLE_ERR;
    }
    return DALLE_OK;
}

int prior_config_from_file(const st_file *f, prior_config *cfg) {
    const char *kind = st_meta(f, "dalle.kind"), *js = st_meta(f, "prior.config");
    if (!kind || (strcmp(kind, "prior") && strcmp(kind, "prior-checkpoint")))
        return dalle_seterr("%s: not a prior model (metadata dalle.kind is '%s')", f->path, kind ? kind : "missing");
    if (!js) return dalle_seterr("%s: metadata 'prior.config' missing", f->path);
    char what[600];
    snprintf(what, sizeof what, "%s: metadata 'prior.config'", f->path);
    return prior_config_from_json(js, cfg, what);
}

int prior_save_as(const prior_model *m, const char *path, st_dtype dtype) {
    backend_sync(); // the parameters are read on the host
    st_writer *w = st_writer_new();
    if (!w) return DALLE_ERR;
    int rc = DALLE_ERR;
    if (!prior_write_meta(&m->cfg, w, "prior") && !prior_add_tensors(m, w, "", m->params, dtype))
        rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

int prior_save(const prior_model *m, const char *path) { return prior_save_as(m, path, ST_F32); }

static int prior_knows(const void *m, const char *name) { return prior_find_tensor(m, name) >= 0; }

prior_model *prior_load(const char *path, int use_ema) {
    st_file *f = st_open(path);
    if (!f) return NULL;
    prior_config cfg;
    prior_model *m = NULL;
    if (prior_config_from_file(f, &cfg)) goto fail;
    if (!(m = prior_model_new(&cfg, PRIOR_FP32))) {
        dalle_errprefix("%s", path);
        goto fail;
    }
    // Every tensor of the file must be one of ours (with a checkpoint's prefixes).
    static const char *const prefixes[] = {"", "ema.", "adam.m.", "adam.v."};
    if (st_check_names(f, prefixes, 4, prior_knows, m, "a model of another architecture?")) goto fail;
    // A checkpoint's EMA is stored accumulated from zero, with the scale
    // that debiases it (src/prior/train.c); scale 0: no update yet.
    const char *es = st_meta(f, "train.ema_scale");
    double scale = es ? atof(es) : 0;
    int ema = use_ema && st_find(f, "ema.text_emb.weight") && scale > 0;
    if (prior_read_tensors(m, f, ema ? "ema." : "", m->params)) goto fail;
    if (ema)
        for (int64_t i = 0; i < m->n_params; i++) m->params[i] = (float)(m->params[i] * scale);
    st_close(f);
    return m;
fail:
    st_close(f);
    prior_model_free(m);
    return NULL;
}

void prior_free(prior_model *m) { prior_model_free(m); }
const prior_config *prior_get_config(const prior_model *m) { return &m->cfg; }
