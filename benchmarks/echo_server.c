/* A reference echo server in C: what the kernel's side of an echo costs, with no Python.
 *
 * bench_echo.py compiles this file with `cc -O2` beside echo_client.c and runs it as the
 * server "C epoll": `bench_echo.py serve "C epoll"` listens, prints its port, pins itself
 * to the server core and then executes
 *
 *     echo_server LISTEN_FD
 *
 * which serves the inherited listening socket forever (the driver kills it): one
 * level-triggered epoll, non-blocking sockets, one recv of up to 64 KiB per readable
 * connection and one send of what came, the same system calls per request as the bare
 * `selectors` server of bench_echo.py. It is not a competitor but the floor under all of
 * them: no server written in any language can spend less of the kernel's time per
 * request with these calls, so its CPU per request shows how much of every other
 * server's time is the kernel's loopback TCP path and how much is its own.
 *
 * A reply that does not fit the socket's buffer at once (not seen with the benchmark's
 * sizes) is finished with a blocking poll on that one connection: simple, and never
 * wrong for ping-pong, where the peer reads before it sends again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENTS 1024
#define READ_SIZE 65536

static char buffer[READ_SIZE];

static int
send_all(int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            size -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {fd, POLLOUT, 0};
            if (poll(&p, 1, 10000) <= 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: echo_server LISTEN_FD\n");
        return 2;
    }
    int listener = atoi(argv[1]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) {
        perror("epoll");
        return 1;
    }
    struct epoll_event events[EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int c = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0)
                    continue;
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0)
                    close(c);
                continue;
            }
            ssize_t got = recv(fd, buffer, sizeof buffer, 0);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                continue;
            if (got <= 0 || send_all(fd, buffer, (size_t)got) < 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
}
