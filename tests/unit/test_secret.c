/* test_secret.c - secrets out of reach: environment variables wiped in
 * place, memory excluded from core dumps, the process made non-dumpable. */
#include "common.h"
#include "secret.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* The environment string itself (what /proc/PID/environ shows for an
 * inherited variable) is overwritten, not only unlinked from environ. */
static void test_env_take_wipes_in_place(void **state)
{
    (void)state;
    assert_int_equal(setenv("BYOK_TEST_SECRET", "s3cr3t-value", 1), 0);
    char *in_env = getenv("BYOK_TEST_SECRET");
    assert_non_null(in_env);
    size_t len = strlen(in_env);
    bool oom = true;
    char *copy = secret_env_take("BYOK_TEST_SECRET", &oom);
    assert_false(oom);
    assert_non_null(copy);
    assert_string_equal(copy, "s3cr3t-value");
    assert_null(getenv("BYOK_TEST_SECRET"));
    /* glibc keeps setenv()'s string allocated: its bytes must be zero. */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(in_env[i], 0);
    secret_free(copy);

    /* Unset: NULL, and not out of memory. */
    copy = secret_env_take("BYOK_TEST_SECRET", &oom);
    assert_null(copy);
    assert_false(oom);
    secret_env_wipe("BYOK_TEST_SECRET"); /* no-op */

    assert_int_equal(setenv("BYOK_TEST_PLATFORM", "sk-platform", 1), 0);
    in_env = getenv("BYOK_TEST_PLATFORM");
    secret_env_wipe("BYOK_TEST_PLATFORM");
    assert_null(getenv("BYOK_TEST_PLATFORM"));
    assert_int_equal(in_env[0], 0);
}

/* The VmFlags of the mapping holding p, from /proc/self/smaps ("" when not
 * found). */
static void vm_flags(const void *p, char *out, size_t size)
{
    FILE *fp = fopen("/proc/self/smaps", "r");
    assert_non_null(fp);
    char line[512];
    bool inside = false;
    out[0] = '\0';
    while (fgets(line, sizeof(line), fp) != NULL) {
        unsigned long lo, hi;
        /* A mapping's header line ("lo-hi perms ..."); no field line
         * ("Size:", "AnonHugePages:") reads as two hex numbers. */
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = (unsigned long)p >= lo && (unsigned long)p < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, size, "%.*s", (int)(size - 1), line + 8);
            break;
        }
    }
    fclose(fp);
}

static void test_alloc_not_dumped(void **state)
{
    (void)state;
    unsigned char *p = secret_alloc(32);
    assert_non_null(p);
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(p[i], 0); /* zeroed */
    memset(p, 0xab, 32);
    char flags[512];
    vm_flags(p, flags, sizeof(flags));
    if (strstr(flags, " dd") == NULL)
        fail_msg("the mapping is not excluded from core dumps: VmFlags:%s", flags);
    secret_free(p);
    secret_free(NULL);

    char *s = secret_strdup("bpk_secret");
    assert_non_null(s);
    assert_string_equal(s, "bpk_secret");
    secret_free(s);

    /* Larger than a page works too. */
    p = secret_alloc(10000);
    assert_non_null(p);
    memset(p, 1, 10000);
    secret_free(p);
}

/* In a child, so the test process keeps its own settings. */
static void test_harden_process(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid != -1);
    if (pid == 0) {
        char err[256];
        struct rlimit rl;
        int ok = secret_harden_process(err, sizeof(err)) == 0 &&
                 prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 && getrlimit(RLIMIT_CORE, &rl) == 0 &&
                 rl.rlim_cur == 0 && rl.rlim_max == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_take_wipes_in_place),
        cmocka_unit_test(test_alloc_not_dumped),
        cmocka_unit_test(test_harden_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
