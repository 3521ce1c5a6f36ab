// The C reference for native ports (bench/native/run.sh): the same work
// as two native stages, in plain C with no ipcflow code, measured the same
// way as porttool measures them (the reader's clock, first byte to end;
// round trips as a median).
//
//   ref ring BYTES     a writer process copying 64 KiB chunks into a 1 MiB
//                      ring (spin, then futex), a reader process copying
//                      them out: GB/s
//   ref mq BYTES       a raw POSIX mq loop, blocking mq_send of 8192-byte
//                      messages (queue of 10), mq_receive in the reader: GB/s
//   ref rtt ROUNDS     64 bytes there and back over two such rings: median ns
//
// cc -O2 -o ref ref.c   (-lrt on a glibc older than 2.34)
#define _GNU_SOURCE
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 << 10)
#define CAP (1 << 20)

static int64_t now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
	perror(what);
	exit(1);
}

struct ring {
	_Alignas(64) _Atomic uint64_t wpos;
	_Alignas(64) _Atomic uint64_t rpos;
	_Alignas(64) _Atomic uint32_t dseq, dwait;
	_Alignas(64) _Atomic uint32_t sseq, swait;
	_Alignas(64) char data[CAP];
};

static void fwait(_Atomic uint32_t *a, uint32_t v) { syscall(SYS_futex, a, FUTEX_WAIT, v, NULL, NULL, 0); }
static void fwake(_Atomic uint32_t *a) { atomic_fetch_add(a, 1), syscall(SYS_futex, a, FUTEX_WAKE, 1 << 30, NULL, NULL, 0); }

// WAIT_UNTIL: spin (yielding now and then), then sleep on seq: the
// reference of bench/transports/ref.c, unchanged.
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

static size_t ring_read(struct ring *r, char *p, size_t n) {
	uint64_t rp = atomic_load_explicit(&r->rpos, memory_order_relaxed);
	WAIT_UNTIL(atomic_load(&r->wpos) > rp, &r->dseq, &r->dwait);
	size_t avail = atomic_load(&r->wpos) - rp, off = rp % CAP;
	size_t k = n < avail ? n : avail;
	if (k > CAP - off) k = CAP - off;
	memcpy(p, r->data + off, k);
	atomic_store(&r->rpos, rp + k);
	if (atomic_load(&r->swait)) fwake(&r->sseq);
	return k;
}

static struct ring *ring_new(void) {
	struct ring *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED) die("mmap");
	return r;
}

static char buf[CHUNK];

static void ring_stream(long long total) {
	struct ring *r = ring_new();
	pid_t pid = fork();
	if (pid == 0) {
		for (long long left = total; left > 0; left -= CHUNK) ring_write(r, buf, CHUNK);
		_exit(0);
	}
	int64_t t0 = 0;
	for (long long got = 0; got < total;) {
		got += ring_read(r, buf, CHUNK);
		if (t0 == 0) t0 = now();
	}
	printf("%.2f\n", total / (double)(now() - t0));
	waitpid(pid, NULL, 0);
}

static void mq_stream(long long total) {
	char name[64];
	snprintf(name, sizeof name, "/ipcflow.nref%d", getpid());
	struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = 8192};
	mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
	if (q == (mqd_t)-1) die("mq_open");
	mq_unlink(name);
	static char m[8192];
	pid_t pid = fork();
	if (pid == 0) {
		for (long long left = total; left > 0; left -= 8192)
			if (mq_send(q, m, 8192, 0) < 0) die("mq_send");
		_exit(0);
	}
	int64_t t0 = 0;
	for (long long left = total; left > 0; left -= 8192) {
		if (mq_receive(q, m, 8192, NULL) < 0) die("mq_receive");
		if (t0 == 0) t0 = now();
	}
	printf("%.2f\n", total / (double)(now() - t0));
	waitpid(pid, NULL, 0);
}

static int cmp(const void *a, const void *b) {
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void rtt(int rounds) {
	struct ring *a = ring_new(), *b = ring_new();
	char m[64] = {0};
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < rounds; i++) {
			for (size_t got = 0; got < 64;) got += ring_read(a, m + got, 64 - got);
			ring_write(b, m, 64);
		}
		_exit(0);
	}
	int64_t *t = malloc(sizeof *t * rounds);
	for (int i = 0; i < rounds; i++) {
		int64_t t0 = now();
		ring_write(a, m, 64);
		for (size_t got = 0; got < 64;) got += ring_read(b, m + got, 64 - got);
		t[i] = now() - t0;
	}
	qsort(t, rounds, sizeof *t, cmp);
	printf("%lld\n", (long long)t[rounds / 2]);
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv) {
	if (argc == 3 && strcmp(argv[1], "ring") == 0) ring_stream(atoll(argv[2]));
	else if (argc == 3 && strcmp(argv[1], "mq") == 0) mq_stream(atoll(argv[2]));
	else if (argc == 3 && strcmp(argv[1], "rtt") == 0) rtt(atoi(argv[2]));
	else {
		fprintf(stderr, "usage: ref ring BYTES | mq BYTES | rtt ROUNDS\n");
		return 2;
	}
	return 0;
}
