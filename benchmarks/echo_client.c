/* The echo benchmark's client, in C so that it is not the bottleneck.
 *
 * bench_echo.py compiles this file with `cc -O2` into a temporary directory and runs it
 * once per measured call, in its own process, against every server alike:
 *
 *     echo_client PORT CONNECTIONS SIZE WARMUP DURATION [SPIN_US]
 *
 * It opens CONNECTIONS TCP connections to 127.0.0.1:PORT (TCP_NODELAY, non-blocking, all
 * on one level-triggered epoll), pins itself to the first usable core, and plays
 * ping-pong: on each connection one SIZE-byte message is in flight; when all of its echo
 * has come back the same message goes again. It warms up for WARMUP seconds, then counts
 * completed round trips for DURATION seconds and measures its own CPU time
 * (CLOCK_PROCESS_CPUTIME_ID). While it waits for replies it polls without blocking for
 * up to SPIN_US microseconds (default 200) before it blocks, and counts the time those
 * empty polls took (see bench_echo.py for why). At the end it takes the reply still in
 * flight on each connection (so no server sees a connection reset mid-echo) and closes
 * them, then prints
 *
 *     round_trips_counted cpu_seconds wall_seconds round_trips_total spin_seconds
 *
 * on one line (the Python client of bench_echo.py prints the first four). Any failure
 * (refused connection, server hang-up, a reply that never comes) prints a message naming
 * it on stderr and exits with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define READ_SIZE 65536
#define MAX_EVENTS 1024
#define SPIN_US 200 /* default: empty polls for up to this long before one that blocks */

static void die(const char *what) {
    fprintf(stderr, "echo_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Send all of msg on a non-blocking socket, waiting with poll() when its buffer is full. */
static void send_all(int fd, const char *msg, size_t size) {
    size_t sent = 0;
    while (sent < size) {
        ssize_t n = send(fd, msg + sent, size - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 10000) <= 0) die("send: the server took no data for 10 s");
        } else if (errno != EINTR) {
            die("send");
        }
    }
}

/* The client's core: the first usable one (the servers are pinned to the last). */
static void pin_client(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2) return;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set)) {
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            sched_setaffinity(0, sizeof set, &set);
            return;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: echo_client PORT CONNECTIONS SIZE WARMUP DURATION [SPIN_US]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int conns = atoi(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    double warmup = atof(argv[4]), duration = atof(argv[5]);
    double spin = (argc == 7 ? atof(argv[6]) : SPIN_US) * 1e-6;
    if (port <= 0 || conns <= 0 || size == 0 || duration <= 0) {
        fprintf(stderr, "echo_client: bad arguments\n");
        return 2;
    }
    pin_client();

    char *msg = malloc(size), *buf = malloc(READ_SIZE);
    int *fds = calloc(conns, sizeof *fds);
    size_t *received = calloc(conns, sizeof *received);
    if (!msg || !buf || !fds || !received) die("malloc");
    for (size_t i = 0; i < size; i++) msg[i] = (char)rand();

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    int one = 1;
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) die("fcntl");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
        fds[i] = fd;
    }
    for (int i = 0; i < conns; i++) send_all(fds[i], msg, size);

    struct epoll_event events[MAX_EVENTS];
    long done = 0, counted_from = -1;
    double start = clock_seconds(CLOCK_MONOTONIC);
    double measure_from = start + warmup, stop = measure_from + duration;
    double t0 = 0, cpu0 = 0;
    double spun = 0;        /* seconds of the counted window spent in empty polls */
    double idle_since = -1; /* when the current run of empty polls began; -1: none */
    for (;;) {
        double now = clock_seconds(CLOCK_MONOTONIC);
        if (counted_from < 0 && now >= measure_from) {
            counted_from = done;
            cpu0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
            t0 = now;
        }
        if (now >= stop) break;
        /* Poll without blocking until `spin` has passed without a reply: a client that
         * blocks lets its CPU go idle, and each reply then has to wake it up (on a VM a
         * trip through the hypervisor, paid inside the server's send). */
        int block = idle_since >= 0 && now - idle_since >= spin;
        int n = epoll_wait(ep, events, MAX_EVENTS, block ? 100 : 0);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        if (n <= 0) {
            if (idle_since < 0) idle_since = now;
            if (!block && counted_from >= 0) spun += clock_seconds(CLOCK_MONOTONIC) - now;
            continue;
        }
        idle_since = -1;
        for (int e = 0; e < n; e++) {
            uint32_t i = events[e].data.u32;
            ssize_t got = recv(fds[i], buf, READ_SIZE, 0);
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                die("recv");
            }
            if (got == 0) {
                errno = ECONNRESET;
                die("the server closed a connection");
            }
            received[i] += (size_t)got;
            if (received[i] >= size) {
                received[i] = 0;
                done++;
                send_all(fds[i], msg, size);
            }
        }
    }
    double cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    double wall = clock_seconds(CLOCK_MONOTONIC) - t0;

    /* end politely: take the reply still in flight on each connection, then close */
    for (int i = 0; i < conns; i++) {
        while (received[i] < size) {
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            if (poll(&p, 1, 10000) <= 0) die("the last reply did not come within 10 s");
            ssize_t got = recv(fds[i], buf, READ_SIZE, 0);
            if (got == 0) break;
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                die("recv");
            }
            received[i] += (size_t)got;
        }
        close(fds[i]);
    }
    close(ep);
    printf("%ld %.6f %.6f %ld %.6f\n", done - counted_from, cpu, wall, done, spun);
    return 0;
}
