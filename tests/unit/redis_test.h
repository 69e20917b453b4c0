/* redis_test.h - a real redis-server for the unit tests: started on a free
 * loopback port in a fresh temporary directory, stopped (and restarted) on
 * demand. Header-only (static functions): each test executable is one file.
 * A missing redis-server fails the test (scripts/setup.sh installs it). */
#ifndef BYOK_TESTS_REDIS_TEST_H
#define BYOK_TESTS_REDIS_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

struct test_redis {
    pid_t pid;
    int port;
    char dir[64];
    char password[64]; /* "" = none */
};

static int test_redis_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd == -1 || bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
        getsockname(fd, (struct sockaddr *)&a, &len) == -1) {
        if (fd != -1)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* PING answered within timeout_ms? */
static int test_redis_wait(const struct test_redis *t, int timeout_ms)
{
    struct timespec step = {0, 20 * 1000 * 1000};
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        struct timeval tv = {0, 200 * 1000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", t->port, tv);
        if (c != NULL && !c->err) {
            redisReply *r = t->password[0] ? redisCommand(c, "AUTH %s", t->password) : NULL;
            if (r != NULL)
                freeReplyObject(r);
            r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            if (r != NULL)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c != NULL) {
            redisFree(c);
        }
        nanosleep(&step, NULL); /* polling a condition, bounded by timeout_ms */
    }
    return -1;
}

/* Starts redis-server on t->port (picked when 0). -1 on failure. */
static int test_redis_start(struct test_redis *t)
{
    if (t->dir[0] == '\0') {
        snprintf(t->dir, sizeof(t->dir), "/tmp/byok-redis-XXXXXX");
        if (mkdtemp(t->dir) == NULL)
            return -1;
    }
    if (t->port == 0 && (t->port = test_redis_free_port()) <= 0)
        return -1;
    char port[16];
    snprintf(port, sizeof(port), "%d", t->port);
    pid_t pid = fork();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull != -1) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        if (t->password[0])
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", t->dir, "--enable-debug-command", "yes",
                   "--requirepass", t->password, (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", t->dir, "--enable-debug-command", "yes",
                   (char *)NULL);
        _exit(127);
    }
    t->pid = pid;
    if (test_redis_wait(t, 10000) == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        t->pid = 0;
        fprintf(stderr,
                "redis-server did not start on port %d (is it installed? "
                "scripts/setup.sh installs it)\n",
                t->port);
        return -1;
    }
    return 0;
}

static void test_redis_stop(struct test_redis *t, int sig)
{
    if (t->pid > 0) {
        kill(t->pid, sig);
        waitpid(t->pid, NULL, 0);
        t->pid = 0;
    }
}

static void test_redis_cleanup(struct test_redis *t)
{
    test_redis_stop(t, SIGKILL);
    if (t->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", t->dir);
    }
}

#endif
