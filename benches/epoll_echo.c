/*
 * epoll_echo: a minimal single-threaded echo server, the baseline that
 * benches/echo_cpu.sh compares `parlor serve --echo` against (server CPU time per
 * echoed message).
 *
 *   gcc -O2 -o epoll_echo benches/epoll_echo.c && ./epoll_echo 7990
 *
 * Listens on 127.0.0.1:PORT. One thread, nonblocking sockets, level-triggered epoll.
 * Each connection has one fixed 16 KiB buffer, allocated when it is accepted: an
 * EPOLLIN event means one read() into it and one write() of what was read (no
 * allocation or copy per message). If the write is short, the rest stays in the
 * buffer and the connection waits for EPOLLOUT instead of EPOLLIN (so it reads nothing
 * more until that rest is written). EOF or an error closes the connection. Like
 * parlor, it sets TCP_NODELAY on every connection, so both make the same segments.
 * SIGTERM or SIGINT stop it (default action). Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (16 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t off, len;        /* unwritten bytes are buf[off .. off+len) */
    char buf[BUF_SIZE];
};

static int epfd;

static void die(const char *what) { perror(what); exit(1); }

/* Watch `c` for `events` (EPOLLIN or EPOLLOUT). */
static void watch(struct conn *c, int op, unsigned events) {
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void drop(struct conn *c) {
    close(c->fd);           /* also removes it from the epoll set */
    free(c);
}

/* Writes what is pending. Returns 0 when all is written, 1 if some is left (the
 * socket's send buffer is full), -1 on error. */
static int flush(struct conn *c) {
    while (c->len > 0) {
        ssize_t n = write(c->fd, c->buf + c->off, c->len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
        }
        c->off += (size_t)n;
        c->len -= (size_t)n;
    }
    c->off = 0;
    return 0;
}

static void accept_all(int lfd) {
    for (;;) {  /* until EAGAIN: level-triggered, but fewer wake-ups this way */
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) perror("accept4");
            return;  /* EAGAIN; or e.g. EMFILE: try again on the next event */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = malloc(sizeof *c);
        if (!c) { close(fd); continue; }
        c->fd = fd;
        c->off = c->len = 0;
        watch(c, EPOLL_CTL_ADD, EPOLLIN);
    }
}

/* EPOLLIN: the buffer is empty here (a connection with pending bytes waits for
 * EPOLLOUT instead). One read per event: if more is queued, level-triggered epoll
 * reports the socket again, and a loop to EAGAIN would cost an extra read() per
 * wake-up. */
static void on_readable(struct conn *c) {
    ssize_t n = read(c->fd, c->buf, BUF_SIZE);
    if (n == 0) { drop(c); return; }  /* EOF */
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) drop(c);
        return;
    }
    c->off = 0;
    c->len = (size_t)n;
    int r = flush(c);
    if (r < 0) drop(c);
    else if (r > 0) watch(c, EPOLL_CTL_MOD, EPOLLOUT);  /* stop reading until written */
}

static void on_writable(struct conn *c) {
    int r = flush(c);
    if (r < 0) drop(c);
    else if (r == 0) watch(c, EPOLL_CTL_MOD, EPOLLIN);  /* all written: read again */
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);  /* a write to a reset peer is an error, not a signal */

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 1024) < 0) die("listen");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    /* The listener is told apart from connections by a NULL data pointer. */
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");
    fprintf(stderr, "epoll_echo listening on 127.0.0.1:%s\n", argv[1]);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) accept_all(lfd);
            /* By state, not event bits: EPOLLERR/EPOLLHUP come either way, and
             * the next read() or write() reports the error. */
            else if (c->len > 0) on_writable(c);
            else on_readable(c);
        }
    }
}
