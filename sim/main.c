/* main.c (byok-sim) - the simulator on its own: simulated upstreams for a
 * proxy elsewhere (benchmarks, load tests). Prints one line per upstream,
 * "<upstream> <url>" (and "ca <file>" under TLS), then "ready seed=<seed>",
 * and runs until SIGTERM or
 * SIGINT. See usage() and README "Simulated providers". */
#include "common.h"
#include "config.h"
#include "config_json.h"
#include "sim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>
#include <jansson.h>

#define LISTEN_MAX 16

static void usage(FILE *f)
{
    fprintf(f,
            "usage: byok-sim [--config FILE] [--upstreams a,b,...] [--listen-base HOST:PORT]\n"
            "                [--listen UPSTREAM=HOST:PORT]... [--seed N] [--ttfb-ms N]\n"
            "                [--tokens-per-s N] [--reply-tokens N] [--tls [--cert-out FILE]]\n"
            "\n"
            "Simulated provider upstreams (%s).\n"
            "FILE: {\"upstreams\": [...], \"listen_base\": \"HOST:PORT\",\n"
            "       \"listen\": {\"openai\": \"HOST:PORT\"}, \"simulate\": {...}}\n"
            "(\"simulate\" as in the proxy's config). Without --upstreams or \"upstreams\": every\n"
            "one named in \"listen\", else all. Addresses: \"listen\", else --listen-base's\n"
            "port plus the upstream's place in the list, else 127.0.0.1 on a port the kernel\n"
            "picks. Prints \"<upstream> <url>\" per upstream, then \"ready seed=<seed>\".\n"
            "--tls (or \"simulate\": {\"tls\": true}): https:// and wss:// with an ephemeral\n"
            "self-signed certificate, written as PEM to --cert-out FILE (default: a new\n"
            "file in $TMPDIR or /tmp) and named on a line \"ca <file>\" before \"ready\"; give\n"
            "it to the proxy as upstream_ca_file with \"simulate:https://...\" upstreams.\n",
            sim_supported());
}

struct opts {
    const char *config_path;
    char *upstreams[LISTEN_MAX];
    size_t n_upstreams;
    char *listen_base;
    char *listen[LISTEN_MAX][2]; /* upstream, address */
    size_t n_listen;
    json_t *overrides;    /* flag tunables, merged into "simulate" */
    const char *cert_out; /* --cert-out: where the TLS certificate goes */
};

static void opts_free(struct opts *o)
{
    for (size_t i = 0; i < o->n_upstreams; i++)
        free(o->upstreams[i]);
    for (size_t i = 0; i < o->n_listen; i++) {
        free(o->listen[i][0]);
        free(o->listen[i][1]);
    }
    free(o->listen_base);
    json_decref(o->overrides);
}

static int add_upstream(struct opts *o, const char *name, size_t len)
{
    for (size_t i = 0; i < o->n_upstreams; i++)
        if (strlen(o->upstreams[i]) == len && memcmp(o->upstreams[i], name, len) == 0)
            return 0;
    if (o->n_upstreams == LISTEN_MAX) {
        fprintf(stderr, "byok-sim: at most %d upstreams\n", LISTEN_MAX);
        return -1;
    }
    if ((o->upstreams[o->n_upstreams] = strndup(name, len)) == NULL)
        return -1;
    o->n_upstreams++;
    return 0;
}

static int add_listen(struct opts *o, const char *upstream, size_t ulen, const char *addr)
{
    for (size_t i = 0; i < o->n_listen; i++)
        if (strlen(o->listen[i][0]) == ulen && memcmp(o->listen[i][0], upstream, ulen) == 0)
            return 0; /* the first wins: flags are read before the file */
    if (o->n_listen == LISTEN_MAX) {
        fprintf(stderr, "byok-sim: at most %d listen addresses\n", LISTEN_MAX);
        return -1;
    }
    o->listen[o->n_listen][0] = strndup(upstream, ulen);
    o->listen[o->n_listen][1] = strdup(addr);
    if (o->listen[o->n_listen][0] == NULL || o->listen[o->n_listen][1] == NULL)
        return -1;
    o->n_listen++;
    return 0;
}

static int add_list(struct opts *o, const char *csv)
{
    for (const char *p = csv; *p;) {
        p += strspn(p, " ");
        size_t n = strcspn(p, ", ");
        if (n > 0 && add_upstream(o, p, n) == -1)
            return -1;
        p += n;
        p += strspn(p, " ,");
    }
    return 0;
}

/* A numeric flag into the "simulate" overrides. */
static int set_number(struct opts *o, const char *flag, const char *key, const char *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        fprintf(stderr, "byok-sim: %s: \"%s\" is not an integer\n", flag, v);
        return -1;
    }
    if (o->overrides == NULL && (o->overrides = json_object()) == NULL)
        return -1;
    return json_object_set_new(o->overrides, key, json_integer(n));
}

/* simulate.tls: the certificate's PEM into o->cert_out, else a new file in
 * $TMPDIR (or /tmp); the path used into path. 0, or -1 with a message. */
static int write_cert(const struct opts *o, const char *pem, char *path, size_t path_size)
{
    int fd;
    if (o->cert_out != NULL) {
        snprintf(path, path_size, "%s", o->cert_out);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
        const char *dir = getenv("TMPDIR");
        snprintf(path, path_size, "%s/byok-sim-ca-XXXXXX.pem", dir && dir[0] ? dir : "/tmp");
        fd = mkstemps(path, 4);
    }
    size_t len = strlen(pem), off = 0;
    while (fd != -1 && off < len) {
        ssize_t w = write(fd, pem + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (fd == -1 || off < len || close(fd) == -1) {
        fprintf(stderr, "byok-sim: cannot write the certificate to %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* The file's keys: upstreams, listen_base, listen, simulate. 0, or -1
 * with a message printed. *sim_out gets "simulate" (new reference, or
 * NULL). */
static int read_file(struct opts *o, json_t **sim_out)
{
    static const char *const keys[] = {"upstreams", "listen_base", "listen", "simulate"};
    json_error_t jerr;
    struct config_json p = {0};
    *sim_out = NULL;
    json_t *root = json_load_file(o->config_path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fprintf(stderr, "byok-sim: config %s: line %d, column %d: %s\n", o->config_path, jerr.line,
                jerr.column, jerr.text);
        return -1;
    }
    if (config_json_object(&p, root, "config") == -1 ||
        config_json_keys(&p, root, "", keys, ARRAY_SIZE(keys)) == -1)
        goto failed;
    json_t *ups = config_json_get(root, "upstreams");
    if (ups != NULL && o->n_upstreams == 0) {
        size_t i;
        json_t *e;
        if (!json_is_array(ups)) {
            config_json_fail(&p, "upstreams: expected an array of upstream names, got %s",
                             config_json_type(ups));
            goto failed;
        }
        json_array_foreach(ups, i, e)
        {
            if (!json_is_string(e)) {
                config_json_fail(&p, "upstreams[%zu]: expected a string", i);
                goto failed;
            }
            if (add_upstream(o, json_string_value(e), json_string_length(e)) == -1)
                goto failed;
        }
    }
    char *base = NULL;
    if (config_json_string(&p, root, "", "listen_base", NULL, &base) == -1)
        goto failed;
    if (o->listen_base == NULL)
        o->listen_base = base;
    else
        free(base);
    json_t *listen = config_json_get(root, "listen");
    if (listen != NULL) {
        const char *k;
        json_t *v;
        if (config_json_object(&p, listen, "listen") == -1)
            goto failed;
        json_object_foreach(listen, k, v)
        {
            if (!json_is_string(v)) {
                config_json_fail(&p, "listen.%s: expected \"HOST:PORT\", got %s", k,
                                 config_json_type(v));
                goto failed;
            }
            if (add_listen(o, k, strlen(k), json_string_value(v)) == -1)
                goto failed;
        }
    }
    json_t *sim = config_json_get(root, "simulate");
    *sim_out = sim ? json_incref(sim) : NULL;
    json_decref(root);
    return 0;
failed:
    if (p.err != NULL)
        fprintf(stderr, "byok-sim: config %s: %s\n", o->config_path, p.err);
    free(p.err);
    json_decref(root);
    return -1;
}

/* The address of the i-th upstream (NULL: loopback, any port). */
static const char *address_of(const struct opts *o, size_t i, char *buf, size_t size)
{
    for (size_t j = 0; j < o->n_listen; j++)
        if (strcmp(o->listen[j][0], o->upstreams[i]) == 0)
            return o->listen[j][1];
    if (o->listen_base == NULL)
        return NULL;
    char host[256], msg[256];
    int port;
    if (config_parse_address(o->listen_base, host, sizeof(host), &port, msg, sizeof(msg)) == -1)
        return o->listen_base; /* sim_start says what is wrong with it */
    snprintf(buf, size, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port + (int)i);
    return buf;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    int rc = 1;
    json_t *sim_obj = NULL;
    struct config *defaults = NULL;
    struct sim *sim = NULL;
    char *err = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--tls") == 0) {
            if ((o.overrides == NULL && (o.overrides = json_object()) == NULL) ||
                json_object_set_new(o.overrides, "tls", json_true()) == -1)
                goto done;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "byok-sim: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--config") == 0) {
            o.config_path = v;
        } else if (strcmp(a, "--cert-out") == 0) {
            o.cert_out = v;
        } else if (strcmp(a, "--upstreams") == 0) {
            bad = add_list(&o, v);
        } else if (strcmp(a, "--listen-base") == 0) {
            free(o.listen_base);
            bad = (o.listen_base = strdup(v)) == NULL ? -1 : 0;
        } else if (strcmp(a, "--listen") == 0) {
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v) {
                fprintf(stderr, "byok-sim: --listen takes UPSTREAM=HOST:PORT, not \"%s\"\n", v);
                bad = -1;
            } else {
                bad = add_listen(&o, v, (size_t)(eq - v), eq + 1);
            }
        } else if (strcmp(a, "--seed") == 0) {
            bad = set_number(&o, a, "seed", v);
        } else if (strcmp(a, "--ttfb-ms") == 0) {
            bad = set_number(&o, a, "ttfb_ms", v);
        } else if (strcmp(a, "--tokens-per-s") == 0) {
            bad = set_number(&o, a, "tokens_per_s", v);
        } else if (strcmp(a, "--reply-tokens") == 0) {
            bad = set_number(&o, a, "reply_tokens", v);
        } else {
            fprintf(stderr, "byok-sim: unknown argument \"%s\"\n", a);
            usage(stderr);
            opts_free(&o);
            return 2;
        }
        if (bad != 0)
            goto done;
    }
    if (o.config_path != NULL && read_file(&o, &sim_obj) == -1)
        goto done;
    /* Flags over the file's "simulate". */
    if (o.overrides != NULL) {
        if (sim_obj == NULL)
            sim_obj = json_object();
        else if (json_is_object(sim_obj)) {
            json_t *copy = json_deep_copy(sim_obj);
            json_decref(sim_obj);
            sim_obj = copy;
        }
        if (json_is_object(sim_obj))
            json_object_update(sim_obj, o.overrides);
    }
    /* Which upstreams: the list, else those with an address, else all. */
    for (size_t i = 0; o.n_upstreams == 0 && i < o.n_listen; i++)
        if (add_upstream(&o, o.listen[i][0], strlen(o.listen[i][0])) == -1)
            goto done;
    if (o.n_upstreams == 0 && add_list(&o, sim_supported()) == -1)
        goto done;
    for (size_t i = 0; i < o.n_listen; i++) {
        bool listed = false;
        for (size_t j = 0; j < o.n_upstreams; j++)
            listed |= strcmp(o.listen[i][0], o.upstreams[j]) == 0;
        if (!listed) {
            fprintf(stderr, "byok-sim: listen: %s is not among the upstreams to simulate\n",
                    o.listen[i][0]);
            goto done;
        }
    }

    /* The proxy's defaults (limits) and the simulate section, validated as
     * the proxy validates it. */
    defaults = config_parse("{}", &err);
    if (defaults == NULL) {
        fprintf(stderr, "byok-sim: %s\n", err ? err : "out of memory");
        goto done;
    }
    struct config_json p = {0};
    if (config_simulate_parse(&p, sim_obj, &defaults->simulate) == -1) {
        fprintf(stderr, "byok-sim: %s%s%s\n", o.config_path ? o.config_path : "",
                o.config_path ? ": " : "", p.err ? p.err : "invalid");
        free(p.err);
        goto done;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* the threads inherit it */
    if (evthread_use_pthreads() == -1) {
        fprintf(stderr, "byok-sim: cannot initialise libevent threading\n");
        goto done;
    }
    struct sim_listen listens[LISTEN_MAX];
    char addrs[LISTEN_MAX][300];
    for (size_t i = 0; i < o.n_upstreams; i++)
        listens[i] =
            (struct sim_listen){o.upstreams[i], address_of(&o, i, addrs[i], sizeof(addrs[i]))};
    char msg[512];
    sim =
        sim_start(&defaults->simulate, &defaults->limits, listens, o.n_upstreams, msg, sizeof(msg));
    if (sim == NULL) {
        fprintf(stderr, "byok-sim: %s\n", msg);
        goto done;
    }
    if (o.cert_out != NULL && sim_ca_pem(sim) == NULL) {
        fprintf(stderr, "byok-sim: --cert-out without TLS (--tls or \"simulate\": {\"tls\": "
                        "true})\n");
        goto done;
    }
    for (size_t i = 0; i < o.n_upstreams; i++)
        printf("%s %s\n", o.upstreams[i], sim_url(sim, i));
    if (sim_ca_pem(sim) != NULL) {
        char path[4096];
        if (write_cert(&o, sim_ca_pem(sim), path, sizeof(path)) == -1)
            goto done;
        printf("ca %s\n", path);
    }
    printf("ready seed=%llu\n", (unsigned long long)sim_seed(sim));
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    rc = 0;
done:
    sim_stop(sim);
    config_free(defaults);
    json_decref(sim_obj);
    free(err);
    opts_free(&o);
    return rc;
}
