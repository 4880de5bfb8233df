// folder.c: see folder.h.
#include "folder.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/common.h"

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct {
    char **list;
    int n, cap;
} path_list;

static int push(path_list *l, const char *dir, const char *name) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        char **nl = dalle_realloc(l->list, sizeof(char *) * (size_t)cap);
        if (!nl) return DALLE_ERR;
        l->list = nl;
        l->cap = cap;
    }
    size_t len = strlen(dir) + strlen(name) + 2;
    if (!(l->list[l->n] = dalle_malloc(len))) return DALLE_ERR;
    snprintf(l->list[l->n++], len, "%s/%s", dir, name);
    return DALLE_OK;
}

static int walk(path_list *l, const char *dir, int depth) {
    if (depth > 32) return dalle_seterr("%s: folders nested too deeply", dir);
    DIR *d = opendir(dir);
    if (!d) return dalle_seterr("%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *ent;
    int rc = DALLE_OK;
    while (rc == DALLE_OK && (ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        if (is_image_name(ent->d_name)) {
            rc = push(l, dir, ent->d_name);
            continue;
        }
        size_t len = strlen(dir) + strlen(ent->d_name) + 2;
        char *sub = dalle_malloc(len);
        if (!sub) return closedir(d), DALLE_ERR;
        snprintf(sub, len, "%s/%s", dir, ent->d_name);
        struct stat st;
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) rc = walk(l, sub, depth + 1);
        dalle_free(sub);
    }
    closedir(d);
    return rc;
}

int folder_list_images(const char *dirs, char ***paths, int *n) {
    *paths = NULL;
    *n = 0;
    path_list l = {0};
    char *copy = dalle_strdup(dirs), *save = NULL;
    if (!copy) return DALLE_ERR;
    for (char *dir = strtok_r(copy, ",", &save); dir; dir = strtok_r(NULL, ",", &save))
        if (walk(&l, dir, 0)) goto fail;
    if (l.n == 0) {
        dalle_seterr("%s: no .png, .jpg or .jpeg files in this folder", dirs);
        goto fail;
    }
    qsort(l.list, (size_t)l.n, sizeof(char *), cmp_str);
    dalle_free(copy);
    *paths = l.list;
    *n = l.n;
    return DALLE_OK;
fail:
    dalle_free(copy);
    folder_free(l.list, l.n);
    return DALLE_ERR;
}

void folder_free(char **paths, int n) {
    for (int i = 0; paths && i < n; i++) dalle_free(paths[i]);
    dalle_free(paths);
}
