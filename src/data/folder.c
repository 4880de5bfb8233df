// folder.c: see folder.h.
#include "folder.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int folder_list_images(const char *dir, char ***paths, int *n) {
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return dalle_seterr("%s: cannot open folder: %s", dir, strerror(errno));
    char **list = NULL;
    int cnt = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.' || !is_image_name(ent->d_name)) continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 256;
            char **nl = dalle_realloc(list, sizeof(char *) * (size_t)cap);
            if (!nl) goto fail;
            list = nl;
        }
        size_t len = strlen(dir) + strlen(ent->d_name) + 2;
        if (!(list[cnt] = dalle_malloc(len))) goto fail;
        snprintf(list[cnt++], len, "%s/%s", dir, ent->d_name);
    }
    closedir(d);
    if (cnt == 0) {
        dalle_free(list);
        return dalle_seterr("%s: no .png, .jpg or .jpeg files in this folder", dir);
    }
    qsort(list, (size_t)cnt, sizeof(char *), cmp_str);
    *paths = list;
    *n = cnt;
    return DALLE_OK;
fail:
    closedir(d);
    folder_free(list, cnt);
    return DALLE_ERR;
}

void folder_free(char **paths, int n) {
    for (int i = 0; paths && i < n; i++) dalle_free(paths[i]);
    dalle_free(paths);
}
