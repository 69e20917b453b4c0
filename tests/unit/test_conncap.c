/* test_conncap.c - the connection caps: the total, per IPv4 address, per
 * IPv6 /64 (IPv4-mapped counted as IPv4), places given back, no cap, and
 * concurrent enter/leave from several threads. */
#include "common.h"
#include "conncap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return ss;
}

static enum conncap_result enter(struct conncap *cc, const char *ip, struct conncap_slot *slot)
{
    struct sockaddr_storage ss = addr(ip);
    return conncap_enter(cc, (struct sockaddr *)&ss, slot);
}

static void test_per_client_and_total(void **state)
{
    (void)state;
    struct conncap *cc = conncap_new(5, 2);
    assert_non_null(cc);
    struct conncap_slot s[8], none;
    assert_int_equal(enter(cc, "127.0.0.2", &s[0]), CONNCAP_OK);
    assert_int_equal(enter(cc, "127.0.0.2", &s[1]), CONNCAP_OK);
    assert_int_equal(enter(cc, "127.0.0.2", &none), CONNCAP_CLIENT_FULL);
    assert_null(none.cap); /* nothing counted */
    assert_int_equal(enter(cc, "127.0.0.3", &s[2]), CONNCAP_OK);
    assert_int_equal(enter(cc, "127.0.0.3", &s[3]), CONNCAP_OK);
    assert_int_equal(enter(cc, "10.0.0.1", &s[4]), CONNCAP_OK);
    assert_int_equal(conncap_open(cc), 5);
    /* Full: the total comes first, for any address. */
    assert_int_equal(enter(cc, "10.0.0.2", &none), CONNCAP_FULL);
    /* A place given back is a place for anyone; leaving twice is a no-op. */
    conncap_leave(&s[0]);
    conncap_leave(&s[0]);
    assert_int_equal(conncap_open(cc), 4);
    assert_int_equal(enter(cc, "127.0.0.2", &s[0]), CONNCAP_OK);
    assert_int_equal(enter(cc, "127.0.0.2", &none), CONNCAP_FULL);
    for (int i = 0; i < 5; i++)
        conncap_leave(&s[i]);
    assert_int_equal(conncap_open(cc), 0);
    /* The address left the table with its last connection: a new one of
     * it starts from zero. */
    assert_int_equal(enter(cc, "127.0.0.2", &s[0]), CONNCAP_OK);
    assert_int_equal(enter(cc, "127.0.0.2", &s[1]), CONNCAP_OK);
    conncap_leave(&s[0]);
    conncap_leave(&s[1]);
    conncap_free(cc);
}

static void test_ipv6_by_64(void **state)
{
    (void)state;
    struct conncap *cc = conncap_new(100, 2);
    struct conncap_slot s[4], none;
    /* One /64: its addresses share a count. */
    assert_int_equal(enter(cc, "2001:db8:1:2::1", &s[0]), CONNCAP_OK);
    assert_int_equal(enter(cc, "2001:db8:1:2:ffff::9", &s[1]), CONNCAP_OK);
    assert_int_equal(enter(cc, "2001:db8:1:2::77", &none), CONNCAP_CLIENT_FULL);
    /* The next /64 is another client. */
    assert_int_equal(enter(cc, "2001:db8:1:3::1", &s[2]), CONNCAP_OK);
    /* IPv4-mapped counts with the IPv4 address. */
    assert_int_equal(enter(cc, "192.0.2.7", &s[3]), CONNCAP_OK);
    struct conncap_slot m;
    assert_int_equal(enter(cc, "::ffff:192.0.2.7", &m), CONNCAP_OK);
    assert_int_equal(enter(cc, "::ffff:192.0.2.7", &none), CONNCAP_CLIENT_FULL);
    assert_int_equal(enter(cc, "192.0.2.7", &none), CONNCAP_CLIENT_FULL);
    conncap_leave(&m);
    for (int i = 0; i < 4; i++)
        conncap_leave(&s[i]);
    assert_int_equal(conncap_open(cc), 0);
    conncap_free(cc);
}

static void test_no_cap(void **state)
{
    (void)state;
    struct conncap_slot s;
    assert_int_equal(enter(NULL, "127.0.0.1", &s), CONNCAP_OK);
    conncap_leave(&s); /* a zero slot */
    /* No per-address cap: only the total. */
    struct conncap *cc = conncap_new(3, 0);
    struct conncap_slot t[3], none;
    for (int i = 0; i < 3; i++)
        assert_int_equal(enter(cc, "127.0.0.1", &t[i]), CONNCAP_OK);
    assert_int_equal(enter(cc, "127.0.0.1", &none), CONNCAP_FULL);
    /* A family without an address (unix sockets) counts in the total. */
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    assert_int_equal(conncap_enter(cc, &unix_sa, &none), CONNCAP_FULL);
    for (int i = 0; i < 3; i++)
        conncap_leave(&t[i]);
    assert_int_equal(conncap_enter(cc, &unix_sa, &t[0]), CONNCAP_OK);
    conncap_leave(&t[0]);
    conncap_free(cc);
    conncap_free(NULL);
}

#define THREADS 4
#define ROUNDS  20000

static void *churn(void *arg)
{
    struct conncap *cc = arg;
    char ip[32];
    struct conncap_slot held[8];
    memset(held, 0, sizeof(held));
    for (int i = 0; i < ROUNDS; i++) {
        struct conncap_slot *s = &held[i % 8];
        conncap_leave(s);
        snprintf(ip, sizeof(ip), "10.0.%d.%d", (i / 251) % 4, i % 251);
        struct sockaddr_storage ss = addr(ip);
        if (conncap_enter(cc, (struct sockaddr *)&ss, s) != CONNCAP_OK)
            continue; /* over a cap: s stays empty */
    }
    for (int i = 0; i < 8; i++)
        conncap_leave(&held[i]);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct conncap *cc = conncap_new(20, 3);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, cc), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(conncap_open(cc), 0);
    conncap_free(cc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_client_and_total),
        cmocka_unit_test(test_ipv6_by_64),
        cmocka_unit_test(test_no_cap),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
