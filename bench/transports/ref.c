// ref.c: C reference figures for ipcflow's transports, between two
// processes (a writer and a reader, forked), on the same machine and in the
// same minute as `ipcflow bench`, so that ipcflow's rows can be read
// against what the kernel object gives with no Go, no bridge and no cat.
//
//   cc -O2 -o /tmp/ref ref.c -lrt && /tmp/ref [MiB]
//
// Rows: pipe (64 KiB and 1 MiB buffers), unix socketpair, POSIX mq with
// 8 KiB messages (blocking send/receive), and a single-producer ring in
// shared memory (spin, then futex). Each: throughput of MiB bytes in
// 64 KiB writes (8 KiB messages for mq), and the round trip of 64 bytes.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 << 10)
#define ROUNDS 20000

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
	perror(what);
	exit(1);
}

// ---- fd transports: pipe, socketpair ----

static void fd_write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) die("write");
		p += w, n -= w;
	}
}

static void fd_read_all(int fd, char *p, size_t n) {
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r <= 0) die("read");
		p += r, n -= r;
	}
}

// fd_throughput: the child writes total bytes to w, the parent reads r.
static double fd_throughput(int r, int w, long total) {
	static char buf[CHUNK];
	double t0 = now();
	pid_t pid = fork();
	if (pid == 0) {
		close(r);
		for (long left = total; left > 0; left -= CHUNK) fd_write_all(w, buf, left < CHUNK ? left : CHUNK);
		_exit(0);
	}
	close(w);
	long got = 0;
	for (ssize_t n; (n = read(r, buf, CHUNK)) > 0;) got += n;
	waitpid(pid, NULL, 0);
	close(r);
	if (got != total) fprintf(stderr, "short read %ld of %ld\n", got, total);
	return total / (now() - t0) / 1e9;
}

// fd_rtt: a 64-byte ping over a->b, pong over c->d, in microseconds.
static double fd_rtt(int a, int b, int c, int d) {
	char m[64] = {0};
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < ROUNDS; i++) fd_read_all(b, m, 64), fd_write_all(c, m, 64);
		_exit(0);
	}
	double t0 = now();
	for (int i = 0; i < ROUNDS; i++) fd_write_all(a, m, 64), fd_read_all(d, m, 64);
	double us = (now() - t0) / ROUNDS * 1e6;
	waitpid(pid, NULL, 0);
	return us;
}

static void pipe_row(const char *name, int size, long total) {
	int p[2], q[2];
	if (pipe(p) < 0) die("pipe");
	if (size) fcntl(p[1], F_SETPIPE_SZ, size);
	double gbps = fd_throughput(p[0], p[1], total);
	if (pipe(p) < 0 || pipe(q) < 0) die("pipe");
	double us = fd_rtt(p[1], p[0], q[1], q[0]);
	printf("%-22s %6.2f GB/s %9.2f us\n", name, gbps, us);
}

static void unix_row(long total) {
	int s[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) < 0) die("socketpair");
	double gbps = fd_throughput(s[1], s[0], total);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) < 0) die("socketpair");
	double us = fd_rtt(s[0], s[1], s[1], s[0]);
	printf("%-22s %6.2f GB/s %9.2f us\n", "unix socketpair", gbps, us);
}

// ---- POSIX mq ----

static mqd_t mq_make(const char *name, long maxmsg, long msgsize) {
	struct mq_attr a = {.mq_maxmsg = maxmsg, .mq_msgsize = msgsize};
	mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
	if (q == (mqd_t)-1) die("mq_open");
	mq_unlink(name);
	return q;
}

static void mq_row(long total) {
	char name[64];
	snprintf(name, sizeof name, "/ipcflow.ref%d", getpid());
	long msgsize = 8192;
	mqd_t q = mq_make(name, 10, msgsize);
	static char buf[8192];
	double t0 = now();
	pid_t pid = fork();
	if (pid == 0) {
		for (long left = total; left > 0; left -= msgsize)
			if (mq_send(q, buf, msgsize, 0) < 0) die("mq_send");
		_exit(0);
	}
	for (long left = total; left > 0; left -= msgsize)
		if (mq_receive(q, buf, msgsize, NULL) < 0) die("mq_receive");
	double gbps = total / (now() - t0) / 1e9;
	waitpid(pid, NULL, 0);
	mq_close(q);
	mqd_t q1 = mq_make(name, 2, 128);
	strcat(name, "b");
	mqd_t q2 = mq_make(name, 2, 128);
	char m[128];
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < ROUNDS; i++) mq_receive(q1, m, 128, NULL), mq_send(q2, m, 64, 0);
		_exit(0);
	}
	t0 = now();
	for (int i = 0; i < ROUNDS; i++) mq_send(q1, m, 64, 0), mq_receive(q2, m, 128, NULL);
	double us = (now() - t0) / ROUNDS * 1e6;
	waitpid(pid, NULL, 0);
	printf("%-22s %6.2f GB/s %9.2f us\n", "mq 8 KiB messages", gbps, us);
}

// ---- shared-memory ring: one writer, one reader, spin then futex ----

struct ring {
	_Alignas(64) _Atomic uint64_t wpos;
	_Alignas(64) _Atomic uint64_t rpos;
	_Alignas(64) _Atomic uint32_t dseq, dwait;
	_Alignas(64) _Atomic uint32_t sseq, swait;
	_Alignas(64) char data[1 << 20];
};
#define CAP (1 << 20)

static void fwait(_Atomic uint32_t *a, uint32_t v) { syscall(SYS_futex, a, FUTEX_WAIT, v, NULL, NULL, 0); }
static void fwake(_Atomic uint32_t *a) { atomic_fetch_add(a, 1), syscall(SYS_futex, a, FUTEX_WAKE, 1 << 30, NULL, NULL, 0); }

// wait_until: spin (yielding now and then), then sleep on seq.
#define WAIT_UNTIL(cond, seq, waiting)                                  \
	do {                                                            \
		for (int i_ = 0; !(cond); i_++) {                       \
			if (i_ < 20000) {                               \
				if ((i_ & 63) == 63) sched_yield();     \
				continue;                               \
			}                                               \
			atomic_store(waiting, 1);                       \
			uint32_t s_ = atomic_load(seq);                 \
			if (!(cond)) fwait(seq, s_);                    \
			atomic_store(waiting, 0);                       \
		}                                                       \
	} while (0)

static void ring_write(struct ring *r, const char *p, size_t n) {
	while (n > 0) {
		uint64_t w = atomic_load_explicit(&r->wpos, memory_order_relaxed);
		WAIT_UNTIL(w - atomic_load(&r->rpos) < CAP, &r->sseq, &r->swait);
		size_t room = CAP - (w - atomic_load(&r->rpos)), off = w % CAP;
		size_t k = n < room ? n : room;
		if (k > CAP - off) k = CAP - off;
		memcpy(r->data + off, p, k);
		atomic_store(&r->wpos, w + k);
		if (atomic_load(&r->dwait)) fwake(&r->dseq);
		p += k, n -= k;
	}
}

static void ring_read(struct ring *r, char *p, size_t n) {
	while (n > 0) {
		uint64_t rp = atomic_load_explicit(&r->rpos, memory_order_relaxed);
		WAIT_UNTIL(atomic_load(&r->wpos) > rp, &r->dseq, &r->dwait);
		size_t avail = atomic_load(&r->wpos) - rp, off = rp % CAP;
		size_t k = n < avail ? n : avail;
		if (k > CAP - off) k = CAP - off;
		memcpy(p, r->data + off, k);
		atomic_store(&r->rpos, rp + k);
		if (atomic_load(&r->swait)) fwake(&r->sseq);
		p += k, n -= k;
	}
}

static struct ring *ring_new(void) {
	struct ring *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED) die("mmap");
	return r;
}

static void ring_row(long total) {
	struct ring *r = ring_new();
	static char buf[CHUNK];
	double t0 = now();
	pid_t pid = fork();
	if (pid == 0) {
		for (long left = total; left > 0; left -= CHUNK) ring_write(r, buf, CHUNK);
		_exit(0);
	}
	for (long left = total; left > 0; left -= CHUNK) ring_read(r, buf, CHUNK);
	double gbps = total / (now() - t0) / 1e9;
	waitpid(pid, NULL, 0);
	struct ring *a = ring_new(), *b = ring_new();
	char m[64] = {0};
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < ROUNDS; i++) ring_read(a, m, 64), ring_write(b, m, 64);
		_exit(0);
	}
	t0 = now();
	for (int i = 0; i < ROUNDS; i++) ring_write(a, m, 64), ring_read(b, m, 64);
	double us = (now() - t0) / ROUNDS * 1e6;
	waitpid(pid, NULL, 0);
	printf("%-22s %6.2f GB/s %9.2f us\n", "shm ring (C)", gbps, us);
}

int main(int argc, char **argv) {
	long mib = argc > 1 ? atol(argv[1]) : 1024;
	long total = mib << 20;
	printf("%-22s %11s %12s   (%ld MiB, 64-byte round trips x %d)\n", "C REFERENCE", "THROUGHPUT", "RTT", mib, ROUNDS);
	pipe_row("pipe 64 KiB", 0, total);
	pipe_row("pipe 1 MiB", 1 << 20, total);
	unix_row(total);
	mq_row(total);
	ring_row(total);
	return 0;
}
