/*
 * ipcflow_port.h: a native ipcflow stage's ports, in C.
 *
 * One file, C99 with GCC/Clang __atomic builtins, libc and raw system
 * calls only (no librt, no pthreads). Include it in one or more files of
 * a program that runs in a stage marked `native`:
 *
 *     #include "ipcflow_port.h"
 *     ipcflow_port in, out;
 *     if (ipcflow_port_open(&in, "in", IPCFLOW_READER) < 0 ||
 *         ipcflow_port_open(&out, "out", IPCFLOW_WRITER) < 0) {
 *         fprintf(stderr, "%s\n", ipcflow_port_error());
 *         return 1;
 *     }
 *
 * and build it with `gcc -O2 -std=c99 -o prog prog.c -I native/c`.
 *
 * A port is described by IPCFLOW_PORT_<PORT> (docs/native.md): the
 * protocol and version, the edge type, the stage's role, the inherited
 * descriptors (fd= the object, ctl= a control page, life= a liveness
 * pipe: keep it open while the port is in use), sizes, and name=. This
 * header is the C twin of the Go package github.com/ipcflow/ipcflow/native;
 * its test (native/c_test.go) runs the two against each other.
 *
 * Calls, for every type:
 *   ipcflow_port_open   open a port from the environment
 *   ipcflow_port_write  write a stream (waits for room, as a pipe does)
 *   ipcflow_port_read   read a stream (0 at the end of the stream)
 *   ipcflow_port_close  end the stream (writer) or stop reading (reader)
 * shm and mmap, in place (data written once, read where it lies):
 *   ipcflow_shm_reserve / ipcflow_shm_commit   (writer)
 *   ipcflow_shm_borrow  / ipcflow_shm_release  (reader)
 * mmap, the recording for random reads:
 *   ipcflow_mmap_bytes  (reader: the published stream, byte k at [k])
 * mq, whole messages:
 *   ipcflow_mq_send (ipcflow_mq_send_room: no copy) / ipcflow_mq_receive
 *
 * Errors: -1 (or NULL) with errno set, and ipcflow_port_error() says what
 * in one line. EPIPE: every reader has gone (SIGPIPE is not raised: do so
 * yourself to end as a pipe's writer would). ECONNRESET: the writer ended
 * without closing the stream (killed, or exited early): the stream is cut.
 */
#ifndef IPCFLOW_PORT_H
#define IPCFLOW_PORT_H

/* syscall(2) and clock_gettime(2) under -std=c99: include this header
 * first, or define _GNU_SOURCE / _DEFAULT_SOURCE yourself. */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <linux/futex.h>

#define IPCFLOW_PORT_PROTOCOL "ipcflow-port"
#define IPCFLOW_PORT_VERSION 1

enum { IPCFLOW_SHM = 1, IPCFLOW_MQ = 2, IPCFLOW_MMAP = 3 };
enum { IPCFLOW_WRITER = 0, IPCFLOW_READER = 1 };

/* The ring's layout (ring/ring.go): offsets in the segment. */
#define IPCFLOW_RING_MAGIC 0x52776f6c66637069ULL /* "ipcflowR" */
#define IPCFLOW_RING_VERSION 1
#define IPCFLOW_RING_HEADER 4096
#define IPCFLOW_RING_MAX_READERS ((IPCFLOW_RING_HEADER - 256) / 64)
#define IPCFLOW_OFF_MAGIC 0
#define IPCFLOW_OFF_VERSION 8
#define IPCFLOW_OFF_READERS 12
#define IPCFLOW_OFF_CAPACITY 16
#define IPCFLOW_OFF_LAYOUT 24 /* 1: linear (mmap) */
#define IPCFLOW_OFF_WPOS 64
#define IPCFLOW_OFF_WDONE 72
#define IPCFLOW_OFF_WDEAD 76
#define IPCFLOW_OFF_DATASEQ 128
#define IPCFLOW_OFF_DATAWAITERS 132
#define IPCFLOW_OFF_SPACESEQ 192
#define IPCFLOW_OFF_SPACEWAITER 196
#define IPCFLOW_OFF_READER0 256
#define IPCFLOW_READER_STRIDE 64

/* The mq control page (native/control.go). */
#define IPCFLOW_CTL_MAGIC 0x51776f6c66637069ULL /* "ipcflowQ" */
#define IPCFLOW_CTL_SIZE 4096
#define IPCFLOW_CTL_WDONE 64
#define IPCFLOW_CTL_WDEAD 68
#define IPCFLOW_CTL_RGONE 128
#define IPCFLOW_CTL_SENT_BYTES 192 /* payload bytes sent, for ipcflow's --stats */
#define IPCFLOW_CTL_SENT_MSGS 200  /* messages sent, the end of stream not counted */

/* The mq framing: one trailer byte after each message's payload. */
#define IPCFLOW_MQ_ENDS 0
#define IPCFLOW_MQ_CONTINUES 1
#define IPCFLOW_MQ_EOF 2

/* How long a waiter spins before it sleeps on the futex (as ring.go). */
#ifndef IPCFLOW_SPIN_NS
#define IPCFLOW_SPIN_NS 20000
#endif
#define IPCFLOW_POLL_NS 100000000L /* one futex sleep at most */
#define IPCFLOW_MAP_RESERVE (1ULL << 40) /* address space over an mmap file */
#define IPCFLOW_MMAP_STEP (1LL << 20)     /* its first growth; doubles to 1 GiB */
#define IPCFLOW_MQ_WAIT_NS 50000000L /* one mq wait at most */

typedef struct ipcflow_port {
	int type, role;
	int fd, ctl, life;
	int reader, readers;
	long long capacity, maxmsg, msgsize;
	char name[256];
	/* shm and mmap: the ring's header at mem; its data (shm: after the
	 * header; mmap: the file, mapped, byte k at data[k]) */
	unsigned char *mem;
	size_t memlen;
	unsigned char *data;
	uint64_t cap, pos;
	int linear;           /* mmap */
	int64_t fsize, step;  /* mmap writer: bytes allocated, next growth */
	/* mq */
	unsigned char *ctlmem;
	unsigned char *buf;
	size_t start, have;
	struct timespec deadline; /* reused until a call times out on it */
	int eof, closed;
} ipcflow_port;

static char ipcflow_port_errbuf[512];

/* ipcflow_port_error is the last error, in one line. */
static inline const char *ipcflow_port_error(void) { return ipcflow_port_errbuf; }

static inline int ipcflow_port_fail_(int err, const char *fmt, const char *a, const char *b)
{
	snprintf(ipcflow_port_errbuf, sizeof ipcflow_port_errbuf, fmt, a, b);
	errno = err;
	return -1;
}

static inline uint32_t *ipcflow_u32_(unsigned char *m, size_t off) { return (uint32_t *)(void *)(m + off); }
static inline uint64_t *ipcflow_u64_(unsigned char *m, size_t off) { return (uint64_t *)(void *)(m + off); }

static inline uint32_t ipcflow_ld32_(unsigned char *m, size_t off) { return __atomic_load_n(ipcflow_u32_(m, off), __ATOMIC_SEQ_CST); }
static inline uint64_t ipcflow_ld64_(unsigned char *m, size_t off) { return __atomic_load_n(ipcflow_u64_(m, off), __ATOMIC_SEQ_CST); }
static inline void ipcflow_st32_(unsigned char *m, size_t off, uint32_t v) { __atomic_store_n(ipcflow_u32_(m, off), v, __ATOMIC_SEQ_CST); }
static inline void ipcflow_st64_(unsigned char *m, size_t off, uint64_t v) { __atomic_store_n(ipcflow_u64_(m, off), v, __ATOMIC_SEQ_CST); }

static inline void ipcflow_futex_wait_(unsigned char *m, size_t off, uint32_t val)
{
	struct timespec ts = {0, IPCFLOW_POLL_NS};
	syscall(SYS_futex, ipcflow_u32_(m, off), FUTEX_WAIT, val, &ts, NULL, 0);
}

static inline void ipcflow_wake_all_(unsigned char *m, size_t off)
{
	__atomic_add_fetch(ipcflow_u32_(m, off), 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, ipcflow_u32_(m, off), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static inline int64_t ipcflow_now_ns_(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the description ---- */

static inline long long ipcflow_field_(const char *s, const char *key, long long def)
{
	size_t k = strlen(key);
	const char *p = s;
	while ((p = strstr(p, key)) != NULL) {
		if ((p == s || p[-1] == ' ') && p[k] == '=') {
			const char *name = strstr(s, " name=");
			if (name != NULL && p > name)
				return def; /* inside the name */
			return strtoll(p + k + 1, NULL, 10);
		}
		p += k;
	}
	return def;
}

static inline int ipcflow_parse_(ipcflow_port *p, const char *var, const char *v)
{
	char head[64], type[16], role[16];
	const char *name;
	int ver;
	size_t plen = strlen(IPCFLOW_PORT_PROTOCOL);
	memset(p, 0, sizeof *p);
	p->fd = p->ctl = p->life = -1;
	if (strncmp(v, IPCFLOW_PORT_PROTOCOL "/", plen + 1) != 0)
		return ipcflow_port_fail_(EINVAL, "%s: not an ipcflow port description (in \"%s\")", var, v);
	if (sscanf(v, "%63s %15s %15s", head, type, role) != 3)
		return ipcflow_port_fail_(EINVAL, "%s: bad port description (in \"%s\")", var, v);
	ver = atoi(head + plen + 1);
	if (ver != IPCFLOW_PORT_VERSION) {
		char msg[128];
		snprintf(msg, sizeof msg, "%s, this client speaks %s/%d", head, IPCFLOW_PORT_PROTOCOL, IPCFLOW_PORT_VERSION);
		return ipcflow_port_fail_(EPROTO, "%s: port protocol %s: build the stage against this ipcflow's client (native package or ipcflow_port.h)", var, msg);
	}
	if (strcmp(type, "shm") == 0)
		p->type = IPCFLOW_SHM;
	else if (strcmp(type, "mq") == 0)
		p->type = IPCFLOW_MQ;
	else if (strcmp(type, "mmap") == 0)
		p->type = IPCFLOW_MMAP;
	else
		return ipcflow_port_fail_(EINVAL, "%s: unknown type %s", var, type);
	if (strcmp(role, "writer") == 0)
		p->role = IPCFLOW_WRITER;
	else if (strcmp(role, "reader") == 0)
		p->role = IPCFLOW_READER;
	else
		return ipcflow_port_fail_(EINVAL, "%s: unknown role %s", var, role);
	p->fd = (int)ipcflow_field_(v, "fd", -1);
	p->ctl = (int)ipcflow_field_(v, "ctl", -1);
	p->life = (int)ipcflow_field_(v, "life", -1);
	p->reader = (int)ipcflow_field_(v, "reader", 0);
	p->readers = (int)ipcflow_field_(v, "readers", 1);
	p->capacity = ipcflow_field_(v, "capacity", 0);
	p->maxmsg = ipcflow_field_(v, "maxmsg", 0);
	p->msgsize = ipcflow_field_(v, "msgsize", 0);
	name = strstr(v, " name=");
	if (name != NULL)
		snprintf(p->name, sizeof p->name, "%s", name + 6);
	if (p->fd < 0 || (p->type != IPCFLOW_SHM && p->ctl < 0) || (p->type == IPCFLOW_MQ && p->msgsize < 2) ||
	    p->reader >= p->readers)
		return ipcflow_port_fail_(EINVAL, "%s: incomplete port description (in \"%s\")", var, v);
	return 0;
}

/* ---- shm: the ring ---- */

static inline int ipcflow_shm_attach_(ipcflow_port *p)
{
	struct stat st;
	unsigned char *m;
	if (fstat(p->fd, &st) < 0 || st.st_size < IPCFLOW_RING_HEADER)
		return ipcflow_port_fail_(EBADF, "port %s: fd is not a ring segment%s", p->name, "");
	m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
	if (m == MAP_FAILED)
		return ipcflow_port_fail_(errno, "port %s: map the ring: %s", p->name, strerror(errno));
	p->mem = m;
	p->memlen = (size_t)st.st_size;
	if (ipcflow_ld64_(m, IPCFLOW_OFF_MAGIC) != IPCFLOW_RING_MAGIC)
		return ipcflow_port_fail_(EPROTO, "port %s: bad magic: not an ipcflow ring%s", p->name, "");
	if (*ipcflow_u32_(m, IPCFLOW_OFF_VERSION) != IPCFLOW_RING_VERSION) {
		char msg[64];
		snprintf(msg, sizeof msg, "%u, this client speaks %d", *ipcflow_u32_(m, IPCFLOW_OFF_VERSION), IPCFLOW_RING_VERSION);
		return ipcflow_port_fail_(EPROTO, "port %s: ring layout version %s: build the stage against this ipcflow's client", p->name, msg);
	}
	p->cap = *ipcflow_u64_(m, IPCFLOW_OFF_CAPACITY);
	if ((int)*ipcflow_u32_(m, IPCFLOW_OFF_READERS) != p->readers || p->cap + IPCFLOW_RING_HEADER > p->memlen ||
	    (p->capacity != 0 && (uint64_t)p->capacity != p->cap))
		return ipcflow_port_fail_(EPROTO, "port %s: the ring's header does not match its description%s", p->name, "");
	p->data = m + IPCFLOW_RING_HEADER;
	return 0;
}

static inline int ipcflow_mmap_attach_(ipcflow_port *p)
{
	unsigned char *m = mmap(NULL, IPCFLOW_RING_HEADER, PROT_READ | PROT_WRITE, MAP_SHARED, p->ctl, 0);
	struct stat st;
	if (m == MAP_FAILED)
		return ipcflow_port_fail_(errno, "port %s: map the header: %s", p->name, strerror(errno));
	p->mem = m;
	p->memlen = IPCFLOW_RING_HEADER;
	if (ipcflow_ld64_(m, IPCFLOW_OFF_MAGIC) != IPCFLOW_RING_MAGIC)
		return ipcflow_port_fail_(EPROTO, "port %s: bad magic: not an ipcflow ring%s", p->name, "");
	if (*ipcflow_u32_(m, IPCFLOW_OFF_VERSION) != IPCFLOW_RING_VERSION) {
		char msg[64];
		snprintf(msg, sizeof msg, "%u, this client speaks %d", *ipcflow_u32_(m, IPCFLOW_OFF_VERSION), IPCFLOW_RING_VERSION);
		return ipcflow_port_fail_(EPROTO, "port %s: ring layout version %s: build the stage against this ipcflow's client", p->name, msg);
	}
	if (*ipcflow_u32_(m, IPCFLOW_OFF_LAYOUT) != 1 || (int)*ipcflow_u32_(m, IPCFLOW_OFF_READERS) != p->readers)
		return ipcflow_port_fail_(EPROTO, "port %s: the header is not a linear ring of the description's readers%s", p->name, "");
	p->cap = *ipcflow_u64_(m, IPCFLOW_OFF_CAPACITY);
	p->linear = 1;
	p->data = mmap(NULL, IPCFLOW_MAP_RESERVE, PROT_READ | (p->role == IPCFLOW_WRITER ? PROT_WRITE : 0),
		       MAP_SHARED | MAP_NORESERVE, p->fd, 0);
	if (p->data == MAP_FAILED) {
		p->data = NULL;
		return ipcflow_port_fail_(errno, "port %s: map the file: %s", p->name, strerror(errno));
	}
	if (fstat(p->fd, &st) < 0)
		return ipcflow_port_fail_(errno, "port %s: %s", p->name, strerror(errno));
	p->fsize = st.st_size;
	p->step = IPCFLOW_MMAP_STEP;
	return 0;
}

/* the mmap writer's file grows ahead of what it writes: a full disk is an
 * error here, never a SIGBUS through the mapping */
static inline int ipcflow_mmap_grow_(ipcflow_port *p)
{
	int64_t next = p->fsize + p->step;
	if (syscall(SYS_fallocate, p->fd, 0, (off_t)p->fsize, (off_t)(next - p->fsize)) < 0) {
		if (errno == ENOSPC && p->step > (64 << 10)) {
			next = p->fsize + (64 << 10);
			if (syscall(SYS_fallocate, p->fd, 0, (off_t)p->fsize, (off_t)(next - p->fsize)) < 0)
				return ipcflow_port_fail_(errno, "port %s: grow the file: %s", p->name, strerror(errno));
		} else if (errno != EOPNOTSUPP || ftruncate(p->fd, (off_t)next) < 0) {
			return ipcflow_port_fail_(errno, "port %s: grow the file: %s", p->name, strerror(errno));
		}
	}
	p->fsize = next;
	if (p->step < (1LL << 30))
		p->step *= 2;
	return 0;
}

/* free space for the writer; *live is 0 once every reader has gone */
static inline uint64_t ipcflow_free_(ipcflow_port *p, int *live)
{
	uint64_t lo = p->pos;
	int i;
	*live = 0;
	for (i = 0; i < p->readers; i++) {
		size_t base = IPCFLOW_OFF_READER0 + (size_t)i * IPCFLOW_READER_STRIDE;
		uint64_t r;
		if (ipcflow_ld32_(p->mem, base + 8) != 0)
			continue;
		r = ipcflow_ld64_(p->mem, base);
		if (!*live || r < lo)
			lo = r;
		*live = 1;
	}
	return p->cap - (p->pos - lo);
}

/* ipcflow_shm_reserve waits for free space and returns it, one contiguous
 * span (up to the end of the data area): fill a prefix, then commit it.
 * NULL with errno EPIPE once every reader has gone. */
static inline void *ipcflow_shm_reserve(ipcflow_port *p, size_t *len)
{
	int live;
	uint64_t fr = ipcflow_free_(p, &live), off;
	if (fr == 0 && live) {
		int64_t deadline = ipcflow_now_ns_() + IPCFLOW_SPIN_NS;
		int i;
		for (i = 0; fr == 0 && live; i++) {
			if ((i & 63) == 63) {
				if (ipcflow_now_ns_() > deadline)
					break;
				syscall(SYS_sched_yield);
			}
			fr = ipcflow_free_(p, &live);
		}
		while (fr == 0 && live) {
			uint32_t seq;
			ipcflow_st32_(p->mem, IPCFLOW_OFF_SPACEWAITER, 1);
			seq = ipcflow_ld32_(p->mem, IPCFLOW_OFF_SPACESEQ);
			fr = ipcflow_free_(p, &live);
			if (fr > 0 || !live) {
				ipcflow_st32_(p->mem, IPCFLOW_OFF_SPACEWAITER, 0);
				break;
			}
			ipcflow_futex_wait_(p->mem, IPCFLOW_OFF_SPACESEQ, seq);
		}
	}
	if (!live) {
		ipcflow_port_fail_(EPIPE, "port %s: every reader has gone%s", p->name, "");
		return NULL;
	}
	if (p->linear) {
		if ((int64_t)p->pos == p->fsize && ipcflow_mmap_grow_(p) < 0)
			return NULL;
		*len = (size_t)(fr < (uint64_t)p->fsize - p->pos ? fr : (uint64_t)p->fsize - p->pos);
		return p->data + p->pos;
	}
	off = p->pos % p->cap;
	*len = (size_t)(fr < p->cap - off ? fr : p->cap - off);
	return p->data + off;
}

/* ipcflow_shm_commit publishes the first n bytes of the reserved span. */
static inline void ipcflow_shm_commit(ipcflow_port *p, size_t n)
{
	p->pos += n;
	ipcflow_st64_(p->mem, IPCFLOW_OFF_WPOS, p->pos);
	if (ipcflow_ld32_(p->mem, IPCFLOW_OFF_DATAWAITERS) != 0)
		ipcflow_wake_all_(p->mem, IPCFLOW_OFF_DATASEQ);
}

static inline size_t ipcflow_rbase_(ipcflow_port *p) { return IPCFLOW_OFF_READER0 + (size_t)p->reader * IPCFLOW_READER_STRIDE; }

static inline uint64_t ipcflow_avail_(ipcflow_port *p, int *done)
{
	*done = ipcflow_ld32_(p->mem, IPCFLOW_OFF_WDONE) != 0; /* before wpos */
	return ipcflow_ld64_(p->mem, IPCFLOW_OFF_WPOS) - p->pos;
}

/* ipcflow_shm_borrow waits for data and returns the next readable span,
 * in the ring (valid and unchanged until released). At the end of the
 * stream it returns NULL with *len 0 and errno 0; NULL with errno
 * ECONNRESET when the writer ended without closing the stream. */
static inline const void *ipcflow_shm_borrow(ipcflow_port *p, size_t *len)
{
	int done;
	uint64_t n = ipcflow_avail_(p, &done), off;
	if (n == 0 && !done) {
		int64_t deadline = ipcflow_now_ns_() + IPCFLOW_SPIN_NS;
		int i;
		for (i = 0; n == 0 && !done; i++) {
			if ((i & 63) == 63) {
				if (ipcflow_now_ns_() > deadline)
					break;
				syscall(SYS_sched_yield);
			}
			n = ipcflow_avail_(p, &done);
		}
		if (n == 0 && !done) {
			__atomic_add_fetch(ipcflow_u32_(p->mem, IPCFLOW_OFF_DATAWAITERS), 1, __ATOMIC_SEQ_CST);
			for (;;) {
				uint32_t seq = ipcflow_ld32_(p->mem, IPCFLOW_OFF_DATASEQ);
				n = ipcflow_avail_(p, &done);
				if (n > 0 || done)
					break;
				ipcflow_futex_wait_(p->mem, IPCFLOW_OFF_DATASEQ, seq);
			}
			__atomic_sub_fetch(ipcflow_u32_(p->mem, IPCFLOW_OFF_DATAWAITERS), 1, __ATOMIC_SEQ_CST);
		}
	}
	*len = 0;
	if (n == 0 || ipcflow_ld32_(p->mem, ipcflow_rbase_(p) + 8) != 0) {
		if (ipcflow_ld32_(p->mem, IPCFLOW_OFF_WDEAD) != 0) {
			ipcflow_port_fail_(ECONNRESET, "port %s: the writer ended without closing the stream (killed, or exited early)%s", p->name, "");
			return NULL;
		}
		errno = 0;
		return NULL;
	}
	if (p->linear) {
		*len = (size_t)n;
		return p->data + p->pos;
	}
	off = p->pos % p->cap;
	*len = (size_t)(n < p->cap - off ? n : p->cap - off);
	return p->data + off;
}

/* ipcflow_shm_release gives back the first n bytes of the borrowed span. */
static inline void ipcflow_shm_release(ipcflow_port *p, size_t n)
{
	p->pos += n;
	ipcflow_st64_(p->mem, ipcflow_rbase_(p), p->pos);
	if (ipcflow_ld32_(p->mem, IPCFLOW_OFF_SPACEWAITER) != 0)
		ipcflow_wake_all_(p->mem, IPCFLOW_OFF_SPACESEQ);
}

/* ipcflow_mmap_bytes is an mmap reader's recording as published so far,
 * mapped: *len bytes, byte k of the stream at [k]. Published bytes never
 * change; after the end of the stream it is the whole stream. */
static inline const void *ipcflow_mmap_bytes(ipcflow_port *p, size_t *len)
{
	*len = (size_t)ipcflow_ld64_(p->mem, IPCFLOW_OFF_WPOS);
	return p->data;
}

/* ---- mq ---- */

/* The deadline of a blocking send or receive is only read when the queue
 * is full (empty): one is reused until a call times out on it, rather
 * than a clock read per message. */
static inline void ipcflow_mq_renew_(ipcflow_port *p)
{
	struct timespec *ts = &p->deadline;
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += IPCFLOW_MQ_WAIT_NS;
	while (ts->tv_nsec >= 1000000000L) {
		ts->tv_nsec -= 1000000000L;
		ts->tv_sec++;
	}
}

static inline int ipcflow_mq_send_framed_(ipcflow_port *p, const unsigned char *m, size_t n)
{
	for (;;) {
		if (ipcflow_ld32_(p->ctlmem, IPCFLOW_CTL_RGONE) != 0)
			return ipcflow_port_fail_(EPIPE, "port %s: every reader has gone%s", p->name, "");
		if (syscall(SYS_mq_timedsend, p->fd, m, n, 0, &p->deadline) == 0) {
			if (n > 1 || m[0] != IPCFLOW_MQ_EOF) {
				__atomic_fetch_add(ipcflow_u64_(p->ctlmem, IPCFLOW_CTL_SENT_BYTES), (uint64_t)(n - 1), __ATOMIC_RELAXED);
				__atomic_fetch_add(ipcflow_u64_(p->ctlmem, IPCFLOW_CTL_SENT_MSGS), 1, __ATOMIC_RELAXED);
			}
			return 0;
		}
		if (errno == ETIMEDOUT)
			ipcflow_mq_renew_(p);
		else if (errno != EINTR)
			return ipcflow_port_fail_(errno, "port %s: send: %s", p->name, strerror(errno));
	}
}

/* ipcflow_mq_send sends msg (1 to msgsize-1 bytes) as one message. */
static inline int ipcflow_mq_send(ipcflow_port *p, const void *msg, size_t n)
{
	if (n == 0 || n > (size_t)p->msgsize - 1)
		return ipcflow_port_fail_(EMSGSIZE, "port %s: a message must hold 1 to msgsize-1 bytes%s", p->name, "");
	memcpy(p->buf, msg, n);
	p->buf[n] = IPCFLOW_MQ_ENDS;
	return ipcflow_mq_send_framed_(p, p->buf, n + 1);
}

/* ipcflow_mq_send_room is ipcflow_mq_send with no copy: buf holds the
 * message's n bytes and one byte of room after them, where the trailer
 * goes (and stays). */
static inline int ipcflow_mq_send_room(ipcflow_port *p, void *buf, size_t n)
{
	unsigned char *b = buf;
	if (n == 0 || n > (size_t)p->msgsize - 1)
		return ipcflow_port_fail_(EMSGSIZE, "port %s: a message must hold 1 to msgsize-1 bytes%s", p->name, "");
	b[n] = IPCFLOW_MQ_ENDS;
	return ipcflow_mq_send_framed_(p, b, n + 1);
}

/* ipcflow_mq_receive receives the next message into buf (at least
 * msgsize bytes) and returns its payload's length; 0 at the end of the
 * stream; -1 with errno ECONNRESET when the writer ended without it. */
static inline ssize_t ipcflow_mq_receive(ipcflow_port *p, void *buf, size_t cap)
{
	unsigned char *b = buf;
	if (p->eof)
		return 0;
	if (cap < (size_t)p->msgsize) {
		ipcflow_port_fail_(EMSGSIZE, "port %s: the buffer is smaller than msgsize%s", p->name, "");
		return -1;
	}
	for (;;) {
		ssize_t n = syscall(SYS_mq_timedreceive, p->fd, b, cap, NULL, &p->deadline);
		if (n < 0 && errno == ETIMEDOUT && ipcflow_ld32_(p->ctlmem, IPCFLOW_CTL_WDEAD) != 0) {
			struct timespec past = {0, 0};
			n = syscall(SYS_mq_timedreceive, p->fd, b, cap, NULL, &past);
			if (n < 0) {
				ipcflow_port_fail_(ECONNRESET, "port %s: the writer ended without closing the stream (killed, or exited early)%s", p->name, "");
				return -1;
			}
		}
		if (n < 0) {
			if (errno == ETIMEDOUT)
				ipcflow_mq_renew_(p);
			if (errno == ETIMEDOUT || errno == EINTR)
				continue;
			ipcflow_port_fail_(errno, "port %s: receive: %s", p->name, strerror(errno));
			return -1;
		}
		if (n == 0) {
			ipcflow_port_fail_(EPROTO, "port %s: an empty message (not ipcflow's framing)%s", p->name, "");
			return -1;
		}
		if (b[n - 1] == IPCFLOW_MQ_EOF) {
			p->eof = 1;
			return 0;
		}
		if (n == 1)
			continue; /* an empty payload: nothing to hand on */
		return n - 1;
	}
}

/* ---- every type ---- */

/* ipcflow_port_release_ unmaps what the port mapped and closes its
 * descriptors, the liveness pipe's included: its peer learns it is gone. */
static inline void ipcflow_port_release_(ipcflow_port *p)
{
	if (p->mem != NULL)
		munmap(p->mem, p->memlen);
	if (p->linear && p->data != NULL)
		munmap(p->data, IPCFLOW_MAP_RESERVE);
	if (p->ctlmem != NULL)
		munmap(p->ctlmem, IPCFLOW_CTL_SIZE);
	free(p->buf);
	if (p->fd >= 0)
		close(p->fd);
	if (p->ctl >= 0)
		close(p->ctl);
	if (p->life >= 0)
		close(p->life);
	p->mem = p->data = p->ctlmem = p->buf = NULL;
	p->fd = p->ctl = p->life = -1;
	p->closed = 1;
}

static inline int ipcflow_port_attach_(ipcflow_port *p, const char *var, int role);

/* ipcflow_port_open opens port ("in", "out", a declared port's name) for
 * role (IPCFLOW_READER or IPCFLOW_WRITER) from IPCFLOW_PORT_<PORT>. */
static inline int ipcflow_port_open(ipcflow_port *p, const char *port, int role)
{
	char var[128];
	const char *v;
	size_t i, n = strlen("IPCFLOW_PORT_");
	snprintf(var, sizeof var, "IPCFLOW_PORT_%s", port);
	for (i = n; var[i] != 0; i++)
		if (var[i] >= 'a' && var[i] <= 'z')
			var[i] = (char)(var[i] - 'a' + 'A');
	v = getenv(var);
	if (v == NULL) {
		memset(p, 0, sizeof *p);
		p->fd = p->ctl = p->life = -1;
		return ipcflow_port_fail_(ENOENT, "%s is not set: the stage must be marked native, and its port %s must be an mq, shm or mmap edge", var, port);
	}
	if (ipcflow_parse_(p, var, v) < 0)
		return -1;
	if (ipcflow_port_attach_(p, var, role) < 0) {
		int err = errno;
		ipcflow_port_release_(p); /* what a failed open had: let go of it */
		errno = err;
		return -1;
	}
	return 0;
}

static inline int ipcflow_port_attach_(ipcflow_port *p, const char *var, int role)
{
	if (p->role != role)
		return ipcflow_port_fail_(EINVAL, "%s: the port is the stage's %s end, not its other", var, p->role == IPCFLOW_WRITER ? "writer" : "reader");
	switch (p->type) {
	case IPCFLOW_SHM:
		return ipcflow_shm_attach_(p);
	case IPCFLOW_MQ: {
		long attr[8]; /* struct mq_attr: flags, maxmsg, msgsize, curmsgs, reserved */
		unsigned char *c;
		if (syscall(SYS_mq_getsetattr, p->fd, NULL, attr) < 0)
			return ipcflow_port_fail_(EBADF, "port %s: fd is not a message queue: %s", p->name, strerror(errno));
		if (attr[2] != p->msgsize)
			return ipcflow_port_fail_(EPROTO, "port %s: the queue's message size is not the description's%s", p->name, "");
		c = mmap(NULL, IPCFLOW_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->ctl, 0);
		if (c == MAP_FAILED)
			return ipcflow_port_fail_(errno, "port %s: map the control page: %s", p->name, strerror(errno));
		p->ctlmem = c;
		if (ipcflow_ld64_(c, 0) != IPCFLOW_CTL_MAGIC || *ipcflow_u32_(c, 8) != IPCFLOW_PORT_VERSION)
			return ipcflow_port_fail_(EPROTO, "port %s: the control page is not this protocol version's%s", p->name, "");
		p->buf = malloc((size_t)p->msgsize);
		if (p->buf == NULL)
			return ipcflow_port_fail_(ENOMEM, "port %s: no memory for a message%s", p->name, "");
		return 0;
	}
	default:
		return ipcflow_mmap_attach_(p);
	}
}

/* ipcflow_port_write writes all of buf (waiting for room); n, or -1. */
static inline ssize_t ipcflow_port_write(ipcflow_port *p, const void *buf, size_t n)
{
	const unsigned char *b = buf;
	size_t done = 0;
	while (done < n) {
		size_t k;
		if (p->type != IPCFLOW_MQ) {
			size_t room;
			unsigned char *span = ipcflow_shm_reserve(p, &room);
			if (span == NULL)
				return -1;
			k = n - done < room ? n - done : room;
			memcpy(span, b + done, k);
			ipcflow_shm_commit(p, k);
		} else {
			size_t max = (size_t)p->msgsize - 1;
			k = n - done < max ? n - done : max;
			memcpy(p->buf, b + done, k);
			p->buf[k] = b[done + k - 1] == '\n' ? IPCFLOW_MQ_ENDS : IPCFLOW_MQ_CONTINUES;
			if (ipcflow_mq_send_framed_(p, p->buf, k + 1) < 0)
				return -1;
		}
		done += k;
	}
	return (ssize_t)done;
}

/* ipcflow_port_read reads up to n bytes of the stream: 0 at its end. */
static inline ssize_t ipcflow_port_read(ipcflow_port *p, void *buf, size_t n)
{
	if (n == 0)
		return 0;
	if (p->type != IPCFLOW_MQ) {
		size_t len;
		const void *span = ipcflow_shm_borrow(p, &len);
		if (span == NULL)
			return errno == 0 ? 0 : -1;
		if (len > n)
			len = n;
		memcpy(buf, span, len);
		ipcflow_shm_release(p, len);
		return (ssize_t)len;
	}
	while (p->start == p->have) {
		ssize_t k;
		if (n >= (size_t)p->msgsize)
			return ipcflow_mq_receive(p, buf, n);
		k = ipcflow_mq_receive(p, p->buf, (size_t)p->msgsize);
		if (k <= 0)
			return k;
		p->start = 0;
		p->have = (size_t)k;
	}
	if (n > p->have - p->start)
		n = p->have - p->start;
	memcpy(buf, p->buf + p->start, n);
	p->start += n;
	return (ssize_t)n;
}

/* ipcflow_port_close ends the stream (a writer: its readers get the end
 * of stream after its last byte) or stops reading (a reader: the writer
 * no longer waits for it), and lets go of the port. */
static inline int ipcflow_port_close(ipcflow_port *p)
{
	int rc = 0;
	if (p->closed)
		return 0;
	if (p->type != IPCFLOW_MQ && p->mem != NULL) {
		if (p->role == IPCFLOW_WRITER && p->linear && ftruncate(p->fd, (off_t)p->pos) < 0)
			rc = ipcflow_port_fail_(errno, "port %s: truncate the file: %s", p->name, strerror(errno));
		if (p->role == IPCFLOW_WRITER) {
			ipcflow_st32_(p->mem, IPCFLOW_OFF_WDONE, 1);
			ipcflow_wake_all_(p->mem, IPCFLOW_OFF_DATASEQ);
		} else {
			ipcflow_st32_(p->mem, ipcflow_rbase_(p) + 8, 1);
			ipcflow_wake_all_(p->mem, IPCFLOW_OFF_SPACESEQ);
		}
	}
	if (p->type == IPCFLOW_MQ && p->ctlmem != NULL) {
		if (p->role == IPCFLOW_WRITER) {
			unsigned char eof = IPCFLOW_MQ_EOF;
			rc = ipcflow_mq_send_framed_(p, &eof, 1);
			if (rc < 0 && errno == EPIPE)
				rc = 0;
			if (rc == 0)
				ipcflow_st32_(p->ctlmem, IPCFLOW_CTL_WDONE, 1);
		} else {
			ipcflow_st32_(p->ctlmem, IPCFLOW_CTL_RGONE, 1);
		}
	}
	ipcflow_port_release_(p);
	return rc;
}

#endif /* IPCFLOW_PORT_H */
