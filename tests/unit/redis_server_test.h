/* redis_server_test.h - a real redis-server for the unit tests: started on a
 * free loopback port in a temporary directory (nothing saved), waited for
 * with a bound, restarted on the same port, stopped at the end. A missing
 * redis-server is a failure, not a skip (scripts/setup.sh installs it). */
#ifndef BYOK_TESTS_REDIS_SERVER_TEST_H
#define BYOK_TESTS_REDIS_SERVER_TEST_H

#include "common.h"

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct redis_server {
    char dir[64];
    int port;
    pid_t pid;
    char password[64]; /* requirepass when set */
};

static int redis_server_free_port(void)
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

static void redis_server_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A raw connection for looking behind the store's back (NULL when none
 * answers). Caller frees with redisFree(). */
static redisContext *redis_server_connect(const struct redis_server *srv)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv->port, tv);
    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c != NULL)
        redisSetTimeout(c, tv);
    return c;
}

/* Starts redis-server on srv->port (kept when already set) and waits
 * until it answers PING, at most 10 s. -1 with a message on stderr. */
static int redis_server_start(struct redis_server *srv)
{
    if (srv->dir[0] == '\0') {
        snprintf(srv->dir, sizeof(srv->dir), "/tmp/byok-redis-XXXXXX");
        if (mkdtemp(srv->dir) == NULL)
            return -1;
    }
    if (srv->port == 0)
        srv->port = redis_server_free_port();
    char port[16], log[128];
    snprintf(port, sizeof(port), "%d", srv->port);
    snprintf(log, sizeof(log), "%s/redis.log", srv->dir);
    pid_t pid = fork();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        /* DEBUG SLEEP lets a test make the server late on purpose. */
        if (srv->password[0] != '\0')
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", srv->dir, "--logfile", log, "--daemonize",
                   "no", "--enable-debug-command", "yes", "--requirepass", srv->password,
                   (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", srv->dir, "--logfile", log, "--daemonize",
                   "no", "--enable-debug-command", "yes", (char *)NULL);
        fprintf(stderr, "cannot run redis-server (%s): install it (scripts/setup.sh)\n",
                strerror(errno));
        _exit(127);
    }
    srv->pid = pid;
    for (int i = 0; i < 200; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "redis-server exited at start (status %d); see %s\n", st, log);
            srv->pid = 0;
            return -1;
        }
        redisContext *c = redis_server_connect(srv);
        if (c != NULL) {
            if (srv->password[0] != '\0') {
                redisReply *a = redisCommand(c, "AUTH %s", srv->password);
                if (a != NULL)
                    freeReplyObject(a);
            }
            redisReply *r = redisCommand(c, "PING");
            bool up = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r != NULL)
                freeReplyObject(r);
            redisFree(c);
            if (up)
                return 0;
        }
        redis_server_sleep_ms(50);
    }
    fprintf(stderr, "redis-server on port %d did not answer PING within 10 s\n", srv->port);
    return -1;
}

/* Stops it (SIGTERM, then SIGKILL after 5 s) and waits for it. */
static void redis_server_stop(struct redis_server *srv)
{
    if (srv->pid <= 0)
        return;
    kill(srv->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(srv->pid, NULL, WNOHANG) == srv->pid) {
            srv->pid = 0;
            return;
        }
        redis_server_sleep_ms(50);
    }
    kill(srv->pid, SIGKILL);
    waitpid(srv->pid, NULL, 0);
    srv->pid = 0;
}

static int redis_server_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Kills it at once (no shutdown save), as a crash would. */
UNUSED static void redis_server_kill(struct redis_server *srv)
{
    if (srv->pid <= 0)
        return;
    kill(srv->pid, SIGKILL);
    waitpid(srv->pid, NULL, 0);
    srv->pid = 0;
}

/* Stops it and removes its directory. */
static void redis_server_destroy(struct redis_server *srv)
{
    redis_server_stop(srv);
    if (srv->dir[0] != '\0')
        nftw(srv->dir, redis_server_rm, 16, FTW_DEPTH | FTW_PHYS);
    srv->dir[0] = '\0';
}

#endif
