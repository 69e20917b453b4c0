/* main.c - arguments, secrets from the environment, worker threads (one
 * event_base, SO_REUSEPORT listener, curl multi and store handle each), the
 * admin thread, signals, and the draining shutdown. */
#include "common.h"
#include "admin.h"
#include "config.h"
#include "conncap.h"
#include "crypto.h"
#include "dataplane.h"
#include "ephemeral.h"
#include "fleet.h"
#include "follower.h"
#include "http.h"
#include "import.h"
#include "rekey.h"
#include "replica.h"
#include "route.h"
#include "resolve.h"
#include "secret.h"
#include "session.h"
#include "sim.h"
#include "store.h"
#include "upstream.h"
#include "usage.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <malloc.h>

#include <curl/curl.h>
#include <event2/thread.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define BYOK_VERSION "0.2.0"
/* Pinned sessions kept at most (~600 bytes each). */
#define MAX_SESSIONS 131072
/* Ephemeral tokens kept at most (unused ones expire within minutes). */
#define MAX_TOKENS       65536
#define SESSION_SWEEP_MS 30000
#define ADMIN_TOKEN_ENV  "BYOK_ADMIN_TOKEN"
/* The admin listener's own cap on open connections (operators and
 * monitoring, not clients). */
#define ADMIN_MAX_CONNECTIONS 64
/* Descriptors the process needs besides its connections: listeners, event
 * bases, the store, the logs, resolvers, spool files. */
#define FD_RESERVE 256

/* One event loop thread: a data-plane worker or the admin thread. */
struct loop {
    const char *name;
    int index;
    pthread_t thread;
    bool started;
    const struct config *cfg;
    struct conncap *cap; /* shared by the workers; the admin loop has its own */
    struct event_base *base;
    struct http_server *http;
    struct http_server *https; /* workers, when the config has "tls" */
    struct store *store;
    struct upstream_pool *pool;  /* workers only */
    struct resolver *resolver;   /* workers only */
    struct dataplane *dataplane; /* workers only */
    struct fleet *fleet;         /* workers in fleet mode only */
    struct admin *admin;         /* admin only */
    struct event *stop_ev;
    struct event *drain_timer;
    struct event *sweep_timer; /* admin only: expired session pins */
    bool ws_shutdown_sent;     /* draining: WebSocket sessions told to end */
    int64_t drain_deadline;
};

/* Fleet mode (store backend "redis"): the workers read tenants from this
 * copy, which the follower keeps current; NULL otherwise. */
static struct replica *fleet_replica;
static struct follower *fleet_follower;

/* jansson frees its parse buffers (which held, e.g., a connection's api_key
 * from an admin request) without wiping them: make every free a wipe. */
static void *json_alloc(size_t n)
{
    return malloc(n);
}

static void json_free_wiped(void *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: byok-proxy --config FILE [--check-config | --rotate-master-key]\n"
               "       byok-proxy --config REDIS_CONFIG --import-sqlite PATH\n"
               "       byok-proxy --version\n"
               "\n"
               "Secrets come from the environment: BYOK_MASTER_KEY (base64 of 32 bytes),\n"
               "BYOK_ADMIN_TOKEN, and each platform key from the variable its config names.\n"
               "--rotate-master-key re-seals every stored secret under BYOK_MASTER_KEY_NEW\n"
               "(the current key being BYOK_MASTER_KEY, version BYOK_MASTER_KEY_VERSION).\n"
               "--import-sqlite copies the tenants, keys, connections, BYOK settings,\n"
               "balances and secrets of the SQLite store at PATH into the config's Redis\n"
               "(idempotent; nothing is written when Redis holds other data for any of them).\n");
}

static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    (void)fd;
    (void)what;
    /* Done when every connection is closed: a finished response closes its
     * connection once its output is flushed (keep-alive is off while
     * draining), so this waits for the bytes to reach the client too. */
    size_t ws = l->dataplane ? dataplane_live(l->dataplane) : 0;
    size_t open =
        ws + http_server_conn_count(l->http) + (l->https ? http_server_conn_count(l->https) : 0);
    if (open > 0 && mono_ms() >= l->drain_deadline && ws > 0 && !l->ws_shutdown_sent) {
        /* WebSocket sessions get a close (1001) and a moment to write
         * their usage records. */
        log_warn("%s %d: shutdown deadline reached: ending %zu WebSocket sessions and replies "
                 "read on for metering",
                 l->name, l->index, ws);
        dataplane_shutdown(l->dataplane);
        l->ws_shutdown_sent = true;
        l->drain_deadline = mono_ms() + 2000;
    } else if (open == 0 || mono_ms() >= l->drain_deadline) {
        if (open > 0)
            log_warn("%s %d: shutdown deadline reached with %zu connections open; closing them",
                     l->name, l->index, open);
        event_base_loopbreak(l->base);
        return;
    }
    struct timeval tv = {0, 20 * 1000};
    evtimer_add(l->drain_timer, &tv);
}

/* Runs on the loop's own thread (event_active from the main thread). */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    (void)fd;
    (void)what;
    http_server_stop_accepting(l->http);
    if (l->https)
        http_server_stop_accepting(l->https);
    l->drain_deadline = mono_ms() + l->cfg->limits.shutdown_timeout_ms;
    drain_check_cb(-1, 0, l);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    (void)fd;
    (void)what;
    session_sweep();
    ephemeral_sweep();
    struct timeval tv = {SESSION_SWEEP_MS / 1000, 0};
    evtimer_add(l->sweep_timer, &tv);
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    char name[16];
    snprintf(name, sizeof(name), "%s-%d", l->name, l->index);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(l->base);
    return NULL;
}

static void loop_free(struct loop *l)
{
    /* Order: connections first (their handlers may cancel transfers), then
     * transfers, then what the handlers used. */
    http_server_free(l->http);
    http_server_free(l->https);
    upstream_pool_free(l->pool);
    dataplane_free(l->dataplane);
    fleet_free(l->fleet);
    resolve_free(l->resolver);
    admin_free(l->admin);
    store_close(l->store);
    if (l->stop_ev)
        event_free(l->stop_ev);
    if (l->drain_timer)
        event_free(l->drain_timer);
    if (l->sweep_timer)
        event_free(l->sweep_timer);
    if (l->base)
        event_base_free(l->base);
    memset(l, 0, sizeof(*l));
}

static void close_fds(int a, int b)
{
    if (a != -1)
        close(a);
    if (b != -1)
        close(b);
}

/* Takes ownership of listen_fd and tls_fd (-1 when none). admin_token is
 * borrowed for the call (the admin thread keeps only its hash); cap is
 * borrowed (outlives the loop). */
/* An epoll base with the change list: an interest turned on and off again
 * within one loop turn (a response's EV_WRITE enabled while it is written
 * straight to the socket, then disabled) costs no epoll_ctl. The change
 * list's caveat (dup()ed descriptors sharing one file) does not apply: the
 * proxy never dups a socket. */
static struct event_base *new_event_base(void)
{
    struct event_config *ec = event_config_new();
    if (ec == NULL)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

static int loop_init(struct loop *l, const char *name, int index, const struct config *cfg,
                     int listen_fd, int tls_fd, SSL_CTX *ssl_ctx, SSL_CTX *tls_client,
                     const char *admin_token, struct conncap *cap, char **err)
{

    l->name = name;
    l->cap = cap;
    l->index = index;
    l->cfg = cfg;
    l->base = new_event_base();
    if (l->base == NULL) {
        close_fds(listen_fd, tls_fd);
        *err = strdup("cannot create an event base");
        return -1;
    }
    l->stop_ev = event_new(l->base, -1, 0, stop_cb, l);
    l->drain_timer = evtimer_new(l->base, drain_check_cb, l);
    /* The admin thread is the control side: it may use a fleet (Redis)
     * store synchronously; workers go through the data plane's client. */
    bool worker = strcmp(name, "worker") == 0;
    l->store = worker && fleet_replica != NULL
                   ? replica_store(fleet_replica)
                   : store_open_role(cfg, worker ? STORE_ROLE_DATA_PLANE : STORE_ROLE_CONTROL, err);
    if (l->store == NULL && *err == NULL)
        *err = strdup("out of memory opening the replica");
    if (l->store == NULL) {
        close_fds(listen_fd, tls_fd);
        return -1;
    }
    struct http_server_opts opts = {.limits = &cfg->limits, .name = name, .cap = l->cap};
    if (strcmp(name, "worker") == 0) {
        l->pool = upstream_pool_new(l->base, cfg);
        l->resolver = l->pool ? resolve_new(cfg, l->store) : NULL;
        if (fleet_replica != NULL) {
            char fname[32];
            snprintf(fname, sizeof(fname), "worker %d", index);
            l->fleet = fleet_new(l->base, cfg, fname);
            /* Pins live in Redis; the local table is a short cache of them. */
            if (l->resolver != NULL)
                resolve_set_pin_ttl(l->resolver, FLEET_PIN_CACHE_S);
        }
        l->dataplane = l->resolver && (fleet_replica == NULL || l->fleet != NULL)
                           ? dataplane_new(cfg, l->pool, l->resolver, l->base, tls_client, l->fleet)
                           : NULL;
        if (l->dataplane == NULL) {
            close_fds(listen_fd, tls_fd);
            *err = strdup("out of memory creating a worker");
            return -1;
        }
        opts.on_head = dataplane_head;
        opts.on_request = dataplane_handle;
        opts.arg = l->dataplane;
    } else {
        l->admin = admin_new(cfg, l->store, admin_token);
        if (l->admin == NULL) {
            close_fds(listen_fd, tls_fd);
            *err = strdup("cannot create the admin API");
            return -1;
        }
        admin_set_follower(l->admin, fleet_follower); /* NULL unless fleet mode */
        opts.on_request = admin_handle;
        opts.arg = l->admin;
        l->sweep_timer = evtimer_new(l->base, sweep_cb, l);
        struct timeval tv = {SESSION_SWEEP_MS / 1000, 0};
        if (l->sweep_timer == NULL || evtimer_add(l->sweep_timer, &tv) == -1) {
            close_fds(listen_fd, tls_fd);
            *err = strdup("cannot start the session sweeper");
            return -1;
        }
    }
    l->http = http_server_new(l->base, listen_fd, &opts);
    if (l->http == NULL || l->stop_ev == NULL || l->drain_timer == NULL) {
        if (tls_fd != -1)
            close(tls_fd);
        *err = strdup("cannot start the listener");
        return -1;
    }
    if (tls_fd != -1) {
        opts.ssl_ctx = ssl_ctx;
        l->https = http_server_new(l->base, tls_fd, &opts);
        if (l->https == NULL) {
            *err = strdup("cannot start the TLS listener");
            return -1;
        }
    }
    return 0;
}

/* Each data-plane connection may hold a second descriptor upstream (a
 * transfer or a relayed socket) and each worker's two upstream engines
 * (libcurl, the own HTTP/1.1 client) keep idle upstream connections: raise the soft descriptor
 * limit toward what the caps need (never past the hard limit), and say so once when it stays short
 * (accept then pauses when descriptors run out). */
static void fit_descriptor_limit(const struct config *cfg, int nworkers)
{
    unsigned long long need = (unsigned long long)cfg->limits.max_connections * 2 +
                              (unsigned long long)nworkers * 2 * UPSTREAM_IDLE_MAX +
                              ADMIN_MAX_CONNECTIONS + FD_RESERVE;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)need : MIN((rlim_t)need, rl.rlim_max);
    if (want > rl.rlim_cur) {
        struct rlimit raised = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = want;
    }
    if (rl.rlim_cur < need)
        log_warn("limits.max_connections (%zu) with %d workers needs about %llu file descriptors; "
                 "the process may open %llu (ulimit -n, hard limit %llu): lower "
                 "limits.max_connections or raise the limit. Until then accept() pauses "
                 "whenever descriptors run out",
                 cfg->limits.max_connections, nworkers, need, (unsigned long long)rl.rlim_cur,
                 rl.rlim_max == RLIM_INFINITY ? 0ULL : (unsigned long long)rl.rlim_max);
}

/* "simulate" upstreams (sim.h): each one needs a simulated provider. */
static int simulate_check(const struct config *cfg, char *err, size_t err_size)
{
    for (size_t i = 0; i < provider_count(); i++)
        for (size_t h = 0; h < provider_at(i)->n_hosts; h++) {
            const char *key = provider_at(i)->hosts[h].config_key;
            if (cfg->upstream_kind[i][h] == CONFIG_UPSTREAM_SIM_LOCAL && !sim_supports(key)) {
                snprintf(err, err_size,
                         "upstreams.%s: \"simulate\" is not available for %s yet (simulated: "
                         "%s); give its URL instead",
                         key, key, sim_supported());
                return -1;
            }
        }
    return 0;
}

/* Starts the simulator in this process for the "simulate" upstreams, one
 * loopback listener (ephemeral port) and thread each, and makes their URLs
 * the upstreams: every request still goes through the proxy's own upstream
 * client. *out stays NULL when nothing is simulated here. Before any worker
 * reads the config. */
static int simulate_start(struct config *cfg, struct sim **out, char *err, size_t err_size)
{
    struct sim_listen ls[PROVIDER_MAX * PROVIDER_HOST_MAX];
    size_t at[PROVIDER_MAX * PROVIDER_HOST_MAX][2];
    size_t n = 0;
    *out = NULL;
    for (size_t i = 0; i < provider_count(); i++)
        for (size_t h = 0; h < provider_at(i)->n_hosts; h++)
            if (cfg->upstream_kind[i][h] == CONFIG_UPSTREAM_SIM_LOCAL) {
                ls[n] = (struct sim_listen){provider_at(i)->hosts[h].config_key, NULL};
                at[n][0] = i;
                at[n++][1] = h;
            }
    if (n == 0)
        return 0;
    struct sim *sim = sim_start(&cfg->simulate, &cfg->limits, ls, n, err, err_size);
    if (sim == NULL)
        return -1;
    /* simulate.tls: the simulated hosts' transfers trust its certificate
     * (config_upstream_ca_pem); the WebSocket client's store gets it too. */
    cfg->sim_ca_pem = sim_ca_pem(sim);
    for (size_t k = 0; k < n; k++) {
        if (config_set_upstream(cfg, at[k][0], at[k][1], sim_url(sim, k)) == -1) {
            snprintf(err, err_size, "simulate: out of memory");
            sim_stop(sim);
            return -1;
        }
        const struct provider *p = provider_at(at[k][0]);
        log_info("simulate: upstream %s is simulated at %s%s", ls[k].upstream, sim_url(sim, k),
                 config_platform_key(cfg, p)->placeholder
                     ? " (no platform key configured: the placeholder key is injected)"
                     : "");
    }
    log_info("simulate: seed %llu (set simulate.seed to repeat the same faults); simulated "
             "lines %s",
             (unsigned long long)sim_seed(sim),
             cfg->simulate.charge ? "charge balances (simulate.charge true)"
                                  : "are priced but charge nothing (simulate.charge false)");
    if (cfg->sim_ca_pem != NULL)
        log_info("simulate: TLS on (simulate.tls): the simulated upstreams serve an ephemeral "
                 "self-signed certificate, trusted for them only; verification stays on");
    *out = sim;
    return 0;
}

/* simulate.tls: the upstream WebSocket client trusts the simulator's
 * certificate besides its usual roots (it names only 127.0.0.1, ::1 and
 * localhost, and its key never leaves this process). */
static int trust_sim_cert(SSL_CTX *ctx, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int ok = x != NULL && X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) == 1;
    X509_free(x);
    BIO_free(b);
    return ok ? 0 : -1;
}

static int check_admin_token(const char *t, char *err, size_t err_size)
{
    if (t == NULL || t[0] == '\0') {
        snprintf(err, err_size,
                 "BYOK_ADMIN_TOKEN is not set: the admin API needs a bearer token "
                 "(e.g. export BYOK_ADMIN_TOKEN=$(openssl rand -hex 24))");
        return -1;
    }
    if (strlen(t) < 16) {
        snprintf(err, err_size, "BYOK_ADMIN_TOKEN is too short: use at least 16 characters");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    bool check_only = false;
    bool rotate = false;
    const char *import_path = NULL;
    int rc = 1;
    struct config *cfg = NULL;
    struct loop *workers = NULL;
    struct loop admin_loop;
    bool writer_started = false;
    SSL_CTX *ssl_ctx = NULL;    /* the TLS listener's */
    SSL_CTX *tls_client = NULL; /* upstream wss:// */
    struct conncap *data_cap = NULL, *admin_cap = NULL;
    char err[512];
    char *errp = NULL;
    char *admin_token = NULL;       /* secret_alloc(): until the admin API hashed it */
    struct store_lock *lock = NULL; /* the store, ours for the process's life */
    struct sim *sim = NULL;         /* simulated upstreams ("simulate") */
    bool oom = false;

    memset(&admin_loop, 0, sizeof(admin_loop));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--rotate-master-key") == 0) {
            rotate = true;
        } else if (strcmp(argv[i], "--import-sqlite") == 0 && i + 1 < argc) {
            import_path = argv[++i];
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("byok-proxy %s\n", BYOK_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "byok-proxy: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if ((int)check_only + (int)rotate + (import_path != NULL) > 1) {
        fprintf(stderr, "byok-proxy: --check-config, --rotate-master-key and --import-sqlite "
                        "go one at a time\n");
        usage(stderr);
        return 2;
    }
    if (config_path == NULL) {
        fprintf(stderr, "byok-proxy: --config FILE is required\n");
        usage(stderr);
        return 2;
    }

    /* Before any secret is read: no core file, nothing of this process
     * readable through /proc or ptrace by other users. */
    if (secret_harden_process(err, sizeof(err)) == -1) {
        fprintf(stderr, "byok-proxy: %s\n", err);
        return 1;
    }
    json_set_alloc_funcs(json_alloc, json_free_wiped);
    char rerr[256];
    if (route_init(rerr, sizeof(rerr)) == -1) {
        fprintf(stderr, "byok-proxy: %s\n", rerr);
        return 1;
    }
    cfg = config_load(config_path, &errp);
    if (cfg == NULL) {
        fprintf(stderr, "byok-proxy: config %s: %s\n", config_path, errp ? errp : "invalid");
        free(errp);
        return 1;
    }
    if (simulate_check(cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "byok-proxy: config %s: %s\n", config_path, err);
        config_free(cfg);
        return 1;
    }
    /* Every secret leaves the environment as soon as it is loaded: the
     * platform keys (the config holds them now), the admin token (here),
     * the master key (crypto_init_from_env, or the rotation's). */
    config_wipe_secret_env(cfg);
    admin_token = secret_env_take(ADMIN_TOKEN_ENV, &oom);
    if (check_only) {
        printf("byok-proxy: config %s is valid\n", config_path);
        secret_free(admin_token);
        config_free(cfg);
        return 0;
    }
    if (import_path != NULL) {
        secret_free(admin_token);
        signal(SIGPIPE, SIG_IGN); /* Redis may close its end */
        rc = import_sqlite(cfg, import_path, stdout);
        config_free(cfg);
        return rc;
    }
    if (rotate) {
        secret_free(admin_token);
        rc = rekey_rotate(cfg, stdout);
        crypto_shutdown();
        config_free(cfg);
        return rc;
    }
    enum log_level lvl;
    if (cfg->log_level && log_level_parse(cfg->log_level, &lvl) == 0)
        log_set_level(lvl);

    if (oom)
        snprintf(err, sizeof(err), "out of memory reading %s", ADMIN_TOKEN_ENV);
    if (oom || crypto_init_from_env(err, sizeof(err)) == -1 ||
        check_admin_token(admin_token, err, sizeof(err)) == -1) {
        fprintf(stderr, "byok-proxy: %s\n", err);
        log_error("refusing to start: %s", err);
        goto done;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    /* Threads inherit the mask: only the main thread takes the signals. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (evthread_use_pthreads() == -1 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise libevent threading or libcurl");
        goto done;
    }

    /* One proxy per store, for the whole life of this one: taken before the
     * first connection (it may create the database file, which only then
     * is safe), released after the last. */
    if (store_lock(cfg, &lock, &errp) == -1) {
        fprintf(stderr, "byok-proxy: %s\n", errp ? errp : "cannot lock the store");
        log_error("refusing to start: %s", errp ? errp : "cannot lock the store");
        goto done;
    }
    /* Open (and migrate) the store once here so a bad path fails before any
     * thread starts. */
    bool fleet_mode = cfg->store_backend != NULL && strcmp(cfg->store_backend, "redis") == 0;
    struct store *probe = store_open_role(cfg, STORE_ROLE_CONTROL, &errp);
    if (probe == NULL) {
        fprintf(stderr, "byok-proxy: store: %s\n", errp ? errp : "cannot open");
        log_error("refusing to start: store: %s", errp ? errp : "cannot open");
        goto done;
    }
    /* The proxy-key hashing key lives sealed in the store: a wrong master
     * key is found out here, before anything listens. */
    if (rekey_load_pepper(probe, err, sizeof(err)) == -1) {
        store_close(probe);
        fprintf(stderr, "byok-proxy: %s\n", err);
        log_error("refusing to start: %s", err);
        goto done;
    }
    store_close(probe);
    if (fleet_mode) {
        /* The workers' copy of the tenants, loaded now and kept current
         * from the invalidation channel (DESIGN §7b). */
        fleet_replica = replica_new();
        if (fleet_replica == NULL ||
            (fleet_follower = follower_start(cfg, fleet_replica, &errp)) == NULL) {
            fprintf(stderr, "byok-proxy: fleet: %s\n", errp ? errp : "out of memory");
            log_error("refusing to start: fleet: %s", errp ? errp : "out of memory");
            goto done;
        }
    }
    if (session_init(MAX_SESSIONS) == -1 || ephemeral_init(MAX_TOKENS) == -1) {
        log_error("refusing to start: out of memory for the session and token tables");
        goto done;
    }
    if (simulate_start(cfg, &sim, err, sizeof(err)) == -1) {
        fprintf(stderr, "byok-proxy: %s\n", err);
        log_error("refusing to start: %s", err);
        goto done;
    }

    /* Bind every listener before starting anything, so a taken port is
     * reported at once. */
    if (cfg->workers <= 0)
        cfg->workers = (int)MAX(1, sysconf(_SC_NPROCESSORS_ONLN));
    int nworkers = cfg->workers;
    fit_descriptor_limit(cfg, nworkers);
    /* One cap for the data plane's listeners on every worker (plain and
     * TLS, WebSocket sessions included); the admin listener has its own. */
    data_cap = conncap_new(cfg->limits.max_connections, cfg->limits.max_connections_per_client);
    admin_cap = conncap_new(ADMIN_MAX_CONNECTIONS, 0);
    if (data_cap == NULL || admin_cap == NULL) {
        log_error("refusing to start: out of memory for the connection caps");
        goto done;
    }
    if (cfg->tls_listen != NULL) {
        ssl_ctx = http_tls_context(cfg->tls_cert_file, cfg->tls_key_file, err, sizeof(err));
        if (ssl_ctx == NULL) {
            fprintf(stderr, "byok-proxy: %s\n", err);
            log_error("refusing to start: %s", err);
            goto done;
        }
    }
    /* Upstream WebSockets verify their peers like libcurl does. */
    tls_client = SSL_CTX_new(TLS_client_method());
    if (tls_client == NULL ||
        (cfg->upstream_ca_file
             ? SSL_CTX_load_verify_locations(tls_client, cfg->upstream_ca_file, NULL)
             : SSL_CTX_set_default_verify_paths(tls_client)) != 1) {
        fprintf(stderr, "byok-proxy: cannot load the upstream CA certificates%s%s\n",
                cfg->upstream_ca_file ? " from " : "",
                cfg->upstream_ca_file ? cfg->upstream_ca_file : "");
        goto done;
    }
    if (cfg->sim_ca_pem != NULL && trust_sim_cert(tls_client, cfg->sim_ca_pem) == -1) {
        fprintf(stderr, "byok-proxy: cannot trust the simulator's certificate\n");
        goto done;
    }
    SSL_CTX_set_min_proto_version(tls_client, TLS1_2_VERSION);
    SSL_CTX_set_verify(tls_client, SSL_VERIFY_PEER, NULL);
    /* fds: [2i] plain, [2i+1] TLS (or -1) for worker i, then the admin's. */
    size_t n_fds = 2 * (size_t)nworkers + 1;
    int *fds = malloc(n_fds * sizeof(int));
    workers = calloc((size_t)nworkers, sizeof(*workers));
    if (fds == NULL || workers == NULL) {
        free(fds);
        goto done;
    }
    for (size_t i = 0; i < n_fds; i++)
        fds[i] = -1;
    const char *which = NULL;
    for (int i = 0; i < nworkers && which == NULL; i++) {
        if ((fds[2 * i] = http_listen(cfg->listen, true, err, sizeof(err))) == -1)
            which = "listen";
        else if (cfg->tls_listen != NULL &&
                 (fds[2 * i + 1] = http_listen(cfg->tls_listen, true, err, sizeof(err))) == -1)
            which = "tls.listen";
    }
    if (which == NULL &&
        (fds[n_fds - 1] = http_listen(cfg->admin_listen, false, err, sizeof(err))) == -1)
        which = "admin_listen";
    if (which == NULL && usage_writer_start(cfg, &errp) == -1) {
        which = "usage writer";
        snprintf(err, sizeof(err), "%s", errp ? errp : "cannot start");
    }
    if (which != NULL) {
        fprintf(stderr, "byok-proxy: %s: %s\n", which, err);
        log_error("refusing to start: %s: %s", which, err);
        for (size_t i = 0; i < n_fds; i++)
            if (fds[i] != -1)
                close(fds[i]);
        free(fds);
        goto done;
    }
    writer_started = true;

    /* loop_init takes ownership of the fds it is given, failing or not. */
    int init_failed = 0;
    for (int i = 0; i < nworkers; i++) {
        if (!init_failed && loop_init(&workers[i], "worker", i, cfg, fds[2 * i], fds[2 * i + 1],
                                      ssl_ctx, tls_client, NULL, data_cap, &errp) == -1)
            init_failed = 1;
        else if (init_failed) {
            close(fds[2 * i]);
            if (fds[2 * i + 1] != -1)
                close(fds[2 * i + 1]);
        }
    }
    int admin_fd = fds[n_fds - 1];
    free(fds);
    if (!init_failed && loop_init(&admin_loop, "admin", 0, cfg, admin_fd, -1, NULL, NULL,
                                  admin_token, admin_cap, &errp) == -1)
        init_failed = 1;
    else if (init_failed)
        close(admin_fd);
    /* The admin module keeps only the token's hash. */
    secret_free(admin_token);
    admin_token = NULL;
    if (init_failed) {
        fprintf(stderr, "byok-proxy: %s\n", errp ? errp : "startup failed");
        log_error("refusing to start: %s", errp ? errp : "startup failed");
        goto done;
    }

    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, loop_main, &workers[i]) != 0)
            goto done;
        workers[i].started = true;
    }
    if (pthread_create(&admin_loop.thread, NULL, loop_main, &admin_loop) != 0)
        goto done;
    admin_loop.started = true;
    log_info("byok-proxy %s listening on %s (admin %s), %d workers, store %s", BYOK_VERSION,
             cfg->listen, cfg->admin_listen, nworkers, cfg->store_backend);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("received %s: draining (up to %d ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             cfg->limits.shutdown_timeout_ms);
    rc = 0;

done:
    /* Workers first (in-flight requests finish and submit their records),
     * then the admin API, then the writer flushes everything. */
    if (workers != NULL) {
        for (int i = 0; i < cfg->workers; i++)
            if (workers[i].started)
                event_active(workers[i].stop_ev, 0, 0);
        for (int i = 0; i < cfg->workers; i++) {
            if (workers[i].started)
                pthread_join(workers[i].thread, NULL);
            loop_free(&workers[i]);
        }
        free(workers);
    }
    if (admin_loop.started) {
        event_active(admin_loop.stop_ev, 0, 0);
        pthread_join(admin_loop.thread, NULL);
    }
    if (admin_loop.base != NULL || admin_loop.store != NULL)
        loop_free(&admin_loop);
    if (writer_started)
        usage_writer_stop();
    sim_stop(sim); /* after the workers: their last requests reached it */
    follower_stop(fleet_follower);
    fleet_follower = NULL;
    replica_free(fleet_replica);
    fleet_replica = NULL;
    store_unlock(lock); /* every connection is closed by now */
    secret_free(admin_token);
    conncap_free(data_cap);
    conncap_free(admin_cap);
    free(errp);
    session_shutdown();
    ephemeral_shutdown();
    crypto_shutdown();
    SSL_CTX_free(ssl_ctx);
    SSL_CTX_free(tls_client);
    config_free(cfg);
    curl_global_cleanup();
    if (rc == 0)
        log_info("stopped");
    return rc;
}
