/* replay_main.c - stands in for libFuzzer's main when the fuzz targets are
 * built without clang: runs LLVMFuzzerTestOneInput once per file named on the
 * command line (a directory means every regular file in it), or on stdin. */
#include "common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole stream; caller frees *out. */
static int read_all(FILE *f, uint8_t **out, size_t *out_len)
{
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    for (;;) {
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                goto failed;
            buf = bigger;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        goto failed;
    *out = buf;
    *out_len = len;
    return 0;

failed:
    free(buf);
    return -1;
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t len = 0;
    if (f == NULL || read_all(f, &data, &len) == -1) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

static int run_path(const char *path, size_t *count)
{
    struct stat sb;
    if (stat(path, &sb) == -1) {
        fprintf(stderr, "replay: cannot stat %s\n", path);
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (stat(sub, &sb) == 0 && S_ISREG(sb.st_mode)) {
            (*count)++;
            if (run_file(sub) == -1)
                rc = -1;
        }
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;
    if (argc < 2) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (read_all(stdin, &data, &len) == -1) {
            fprintf(stderr, "replay: cannot read stdin\n");
            return 1;
        }
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        count = 1;
    }
    for (int i = 1; i < argc; i++) {
        /* libFuzzer flags ("-runs=...") are accepted and ignored, so the
         * same command lines work in both builds. */
        if (argv[i][0] == '-')
            continue;
        if (run_path(argv[i], &count) == -1)
            rc = 1;
    }
    fprintf(stderr, "replay: %zu input(s) ran%s\n", count, rc ? " (some unreadable)" : "");
    return rc;
}
