/* usage_writer.c - what the usage writer's durability costs: records
 * through the real writer (usage_submit, group commit into SQLite with its
 * charge, JSONL append, its fdatasync at most once a second) into a fresh store in
 * a directory on the disk under test. usage_writer.sh builds it twice, with
 * the store's synchronous=FULL (the default) and with NORMAL, and runs both.
 *
 *   usage_writer DIR serial N   each record waits for its commit (usage_writer_sync):
 *                               one transaction per record, the writer's worst case
 *   usage_writer DIR burst N    N records queued at once: batches of up to 256
 *
 * Prints records/s, transactions and the mean time per transaction. */
#include "common.h"
#include "config.h"
#include "store.h"
#include "usage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct usage_record record(int i)
{
    struct usage_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "bench-%08d", i);
    r.ts_ms = now_ms();
    snprintf(r.tenant_id, sizeof(r.tenant_id), "payer");
    snprintf(r.payer_id, sizeof(r.payer_id), "payer");
    snprintf(r.key_id, sizeof(r.key_id), "k_bench");
    r.provider = provider_find("openai");
    snprintf(r.line, sizeof(r.line), "llm");
    snprintf(r.endpoint, sizeof(r.endpoint), "/v1/chat/completions");
    snprintf(r.model, sizeof(r.model), "gpt-4o-mini");
    r.status = 200;
    r.units.input_tokens = 12;
    r.units.output_tokens = 5;
    r.cost_micros = 5;
    r.ttfb_ms = 40;
    r.duration_ms = 380;
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[2], "serial") != 0 && strcmp(argv[2], "burst") != 0)) {
        fprintf(stderr, "usage: %s DIR serial|burst N\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]);
    bool serial = strcmp(argv[2], "serial") == 0;
    char store_path[4096], jsonl[4096], spool[4096], backend[] = "sqlite";
    snprintf(store_path, sizeof(store_path), "%s/byok.db", argv[1]);
    snprintf(jsonl, sizeof(jsonl), "%s/usage.jsonl", argv[1]);
    snprintf(spool, sizeof(spool), "%s/spool", argv[1]);
    struct config cfg = {.store_backend = backend,
                         .store_path = store_path,
                         .usage_jsonl_path = jsonl,
                         .usage_spool_dir = spool};
    log_set_level(LOG_LEVEL_WARN);
    char *err = NULL;
    struct store_lock *lock = NULL;
    struct store *s = NULL;
    if (store_lock(&cfg, &lock, &err) == -1 || (s = store_open(&cfg, &err)) == NULL) {
        fprintf(stderr, "store: %s\n", err ? err : "?");
        return 1;
    }
    struct store_tenant t = {.id = "payer", .name = "Payer", .wallet_micros = INT64_C(1) << 50};
    if (store_tenant_create(s, &t) != STORE_OK || usage_writer_start(&cfg, &err) == -1) {
        fprintf(stderr, "start: %s\n", err ? err : "?");
        return 1;
    }
    struct usage_stats before, after;
    usage_writer_stats(&before);
    int64_t t0 = mono_ms();
    for (int i = 0; i < n; i++) {
        struct usage_record r = record(i);
        usage_submit(&r);
        if (serial)
            usage_writer_sync();
    }
    usage_writer_sync();
    int64_t ms = mono_ms() - t0;
    usage_writer_stats(&after);
    usage_writer_stop();
    store_close(s);
    store_unlock(lock);
    uint64_t batches = after.batches - before.batches;
    printf("%-6s %6d records in %6lld ms: %8.0f records/s, %6llu transactions, %6.3f ms each\n",
           argv[2], n, (long long)ms, ms > 0 ? 1000.0 * n / (double)ms : 0.0,
           (unsigned long long)batches, batches ? (double)ms / (double)batches : 0.0);
    return after.written - before.written == (uint64_t)n ? 0 : 1;
}
