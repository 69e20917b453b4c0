/* metrics.c - relaxed atomic counters and a fixed-bucket TTFB histogram per
 * provider, rendered as Prometheus text. */
#include "common.h"
#include "metrics.h"
#include "crypto.h"
#include "session.h"
#include "usage.h"

#include <dirent.h>
#include <stdatomic.h>
#include <sys/resource.h>

static const char *const counter_names[METRICS__COUNT][2] = {
    {"byok_requests_total", "Data-plane requests answered."},
    {"byok_requests_rejected_total", "Requests refused by the proxy itself (4xx)."},
    {"byok_upstream_errors_total", "Upstream failures (502/504, broken streams)."},
    {"byok_client_disconnects_total", "Clients that went away mid-request."},
    {"byok_connections_accepted_total", "Downstream connections accepted."},
    {"byok_auth_failures_total", "Requests refused for a missing or wrong proxy key."},
    {"byok_tokens_minted_total", "Ephemeral tokens issued for browsers."},
    {"byok_connection_unreadable_total",
     "Requests that fell back to the platform key because their BYOK connection could not be "
     "decrypted with the master key in force (fallback_reason connection_unreadable)."},
    {"byok_accept_paused_total", "Listener pauses after accept() failed (out of descriptors)."},
};

static const char *const refusal_names[METRICS_REFUSED__COUNT] = {
    [METRICS_REFUSED_AUTH] = "auth",
    [METRICS_REFUSED_BALANCE] = "balance",
    [METRICS_REFUSED_ENDPOINT] = "endpoint_not_allowed",
    [METRICS_REFUSED_MODEL] = "model_not_priced",
    [METRICS_REFUSED_LIMITS] = "limits",
    [METRICS_REFUSED_REQUEST] = "bad_request",
    [METRICS_REFUSED_UNAVAILABLE] = "unavailable",
    [METRICS_REFUSED_CONNECTIONS] = "max_connections",
    [METRICS_REFUSED_CONNECTIONS_CLIENT] = "max_connections_per_client",
};

static _Atomic uint64_t counters[METRICS__COUNT];
static _Atomic int64_t open_conns;

static const int bucket_ms[] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
#define N_BUCKETS (sizeof(bucket_ms) / sizeof(bucket_ms[0]))
static _Atomic uint64_t ttfb_buckets[PROVIDER_MAX][N_BUCKETS + 1];
static _Atomic uint64_t ttfb_sum_ms[PROVIDER_MAX];
static _Atomic uint64_t upstream_by_class[PROVIDER_MAX][6]; /* 1xx..5xx, [0] = no reply */
/* Exchanges by provider, status class of the answer and billed_to. */
static _Atomic uint64_t exchanges[PROVIDER_MAX][6][2];
/* Refusals by provider ([PROVIDER_MAX]: no route) and reason. */
static _Atomic uint64_t refusals[PROVIDER_MAX + 1][METRICS_REFUSED__COUNT];

static int status_class(int status)
{
    return (status >= 100 && status < 600) ? status / 100 : 0;
}

void metrics_refused(const struct provider *p, enum metrics_refusal why)
{
    size_t i = p != NULL ? provider_index(p) : PROVIDER_MAX;
    atomic_fetch_add_explicit(&refusals[i][why], 1, memory_order_relaxed);
}

void metrics_exchange(const struct provider *p, int status, bool byok)
{
    atomic_fetch_add_explicit(&exchanges[provider_index(p)][status_class(status)][byok], 1,
                              memory_order_relaxed);
}

void metrics_inc(enum metrics_counter c)
{
    atomic_fetch_add_explicit(&counters[c], 1, memory_order_relaxed);
}

void metrics_add(enum metrics_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void metrics_conn_open(int delta)
{
    atomic_fetch_add_explicit(&open_conns, delta, memory_order_relaxed);
}

void metrics_observe_upstream(const struct provider *p, int status, int64_t ttfb_ms)
{
    size_t i = provider_index(p);
    atomic_fetch_add_explicit(&upstream_by_class[i][status_class(status)], 1, memory_order_relaxed);
    if (ttfb_ms < 0)
        return;
    size_t b = 0;
    while (b < N_BUCKETS && ttfb_ms > bucket_ms[b])
        b++;
    atomic_fetch_add_explicit(&ttfb_buckets[i][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ttfb_sum_ms[i], (uint64_t)ttfb_ms, memory_order_relaxed);
}

void metrics_render(struct evbuffer *out)
{
    for (int i = 0; i < METRICS__COUNT; i++) {
        evbuffer_add_printf(
            out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_names[i][0],
            counter_names[i][1], counter_names[i][0], counter_names[i][0],
            (unsigned long long)atomic_load_explicit(&counters[i], memory_order_relaxed));
    }
    /* The process's descriptors (standard process_* names): readable here
     * although the process is not dumpable (its /proc files are root's). */
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    struct rlimit rl;
    evbuffer_add_printf(out,
                        "# HELP process_open_fds Open file descriptors.\n"
                        "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n"
                        "# HELP process_max_fds Descriptor limit (RLIMIT_NOFILE).\n"
                        "# TYPE process_max_fds gauge\nprocess_max_fds %lld\n",
                        fds, getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long long)rl.rlim_cur : -1LL);
    evbuffer_add_printf(out,
                        "# HELP byok_open_connections Open downstream connections.\n"
                        "# TYPE byok_open_connections gauge\nbyok_open_connections %lld\n",
                        (long long)atomic_load_explicit(&open_conns, memory_order_relaxed));

    evbuffer_add_printf(out,
                        "# HELP byok_upstream_responses_total Upstream replies by status class.\n"
                        "# TYPE byok_upstream_responses_total counter\n");
    static const char *const cls_names[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (size_t p = 0; p < provider_count(); p++)
        for (int c = 0; c < 6; c++) {
            uint64_t v = atomic_load_explicit(&upstream_by_class[p][c], memory_order_relaxed);
            if (v)
                evbuffer_add_printf(
                    out, "byok_upstream_responses_total{provider=\"%s\",class=\"%s\"} %llu\n",
                    provider_at(p)->name, cls_names[c], (unsigned long long)v);
        }

    evbuffer_add_printf(out, "# HELP byok_exchanges_total Proxied exchanges by provider, status "
                             "class of the answer and billed_to.\n"
                             "# TYPE byok_exchanges_total counter\n");
    for (size_t p = 0; p < provider_count(); p++)
        for (int c = 0; c < 6; c++)
            for (int b = 0; b < 2; b++) {
                uint64_t v = atomic_load_explicit(&exchanges[p][c][b], memory_order_relaxed);
                if (v)
                    evbuffer_add_printf(out,
                                        "byok_exchanges_total{provider=\"%s\",class=\"%s\","
                                        "billed_to=\"%s\"} %llu\n",
                                        provider_at(p)->name, cls_names[c], b ? "byok" : "wallet",
                                        (unsigned long long)v);
            }

    evbuffer_add_printf(out, "# HELP byok_refusals_total Requests the proxy refused before "
                             "anything went upstream, by reason.\n"
                             "# TYPE byok_refusals_total counter\n");
    for (size_t p = 0; p <= provider_count(); p++) {
        size_t i = p < provider_count() ? p : PROVIDER_MAX;
        const char *pn = p < provider_count() ? provider_at(p)->name : "none";
        for (int r = 0; r < METRICS_REFUSED__COUNT; r++) {
            uint64_t v = atomic_load_explicit(&refusals[i][r], memory_order_relaxed);
            if (v)
                evbuffer_add_printf(out,
                                    "byok_refusals_total{provider=\"%s\",reason=\"%s\"} %llu\n", pn,
                                    refusal_names[r], (unsigned long long)v);
        }
    }

    evbuffer_add_printf(out, "# HELP byok_upstream_ttfb_ms Upstream time to first byte.\n"
                             "# TYPE byok_upstream_ttfb_ms histogram\n");
    for (size_t p = 0; p < provider_count(); p++) {
        uint64_t cum = 0;
        const char *pn = provider_at(p)->name;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load_explicit(&ttfb_buckets[p][b], memory_order_relaxed);
            if (b < N_BUCKETS)
                evbuffer_add_printf(
                    out, "byok_upstream_ttfb_ms_bucket{provider=\"%s\",le=\"%d\"} %llu\n", pn,
                    bucket_ms[b], (unsigned long long)cum);
            else
                evbuffer_add_printf(
                    out, "byok_upstream_ttfb_ms_bucket{provider=\"%s\",le=\"+Inf\"} %llu\n", pn,
                    (unsigned long long)cum);
        }
        evbuffer_add_printf(out,
                            "byok_upstream_ttfb_ms_sum{provider=\"%s\"} %llu\n"
                            "byok_upstream_ttfb_ms_count{provider=\"%s\"} %llu\n",
                            pn, (unsigned long long)atomic_load(&ttfb_sum_ms[p]), pn,
                            (unsigned long long)cum);
    }

    evbuffer_add_printf(out,
                        "# HELP byok_connection_decrypts_total BYOK connection keys opened "
                        "(audit).\n# TYPE byok_connection_decrypts_total counter\n"
                        "byok_connection_decrypts_total %llu\n"
                        "# HELP byok_pinned_sessions Sessions with a pinned decision.\n"
                        "# TYPE byok_pinned_sessions gauge\nbyok_pinned_sessions %zu\n",
                        (unsigned long long)crypto_open_count(), session_count());

    struct usage_stats us;
    usage_writer_stats(&us);
    evbuffer_add_printf(out,
                        "# HELP byok_usage_records_total Usage records by fate.\n"
                        "# TYPE byok_usage_records_total counter\n"
                        "byok_usage_records_total{state=\"submitted\"} %llu\n"
                        "byok_usage_records_total{state=\"written\"} %llu\n"
                        "byok_usage_records_total{state=\"duplicate\"} %llu\n"
                        "byok_usage_records_total{state=\"spooled\"} %llu\n"
                        "byok_usage_records_total{state=\"replayed\"} %llu\n"
                        "byok_usage_records_total{state=\"rejected\"} %llu\n",
                        (unsigned long long)us.submitted, (unsigned long long)us.written,
                        (unsigned long long)us.duplicates, (unsigned long long)us.spooled,
                        (unsigned long long)us.replayed, (unsigned long long)us.rejected);
    evbuffer_add_printf(out,
                        "# HELP byok_usage_batches_total Batches the usage writer committed "
                        "(one store transaction each).\n"
                        "# TYPE byok_usage_batches_total counter\n"
                        "byok_usage_batches_total %llu\n"
                        "# HELP byok_usage_jsonl_syncs_total fdatasyncs of the JSONL usage file "
                        "(at most one a second, and at close).\n"
                        "# TYPE byok_usage_jsonl_syncs_total counter\n"
                        "byok_usage_jsonl_syncs_total %llu\n"
                        "# HELP byok_usage_journal_recovered_total Records a process that ended "
                        "without committing them left in the queue journal, spooled at start.\n"
                        "# TYPE byok_usage_journal_recovered_total counter\n"
                        "byok_usage_journal_recovered_total %llu\n"
                        "# HELP byok_usage_unjournaled_total Records queued while the queue "
                        "journal was full (a kill -9 before their commit loses them).\n"
                        "# TYPE byok_usage_unjournaled_total counter\n"
                        "byok_usage_unjournaled_total %llu\n",
                        (unsigned long long)us.batches, (unsigned long long)us.jsonl_syncs,
                        (unsigned long long)us.journal_recovered,
                        (unsigned long long)us.unjournaled);
}
