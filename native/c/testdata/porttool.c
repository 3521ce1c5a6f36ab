/*
 * porttool.c: internal/porttool's twin in C, for the tests that hold
 * ipcflow_port.h to the Go client and the benchmarks that compare them.
 * The same commands:
 *
 *   porttool copy FROM TO          FROM, TO: a port, or - (stdin, stdout)
 *   porttool die FROM TO N         copy N bytes, then SIGKILL itself
 *   porttool send TO               each stdin line, newline left out, as one mq message
 *   porttool recv FROM             each mq message, then a newline, to stdout
 *   porttool gen TO BYTES CHUNK    BYTES bytes in CHUNK-byte writes (in place on shm,
 *                                  whole messages of CHUNK bytes on mq if they fit)
 *   porttool sink FROM             read to the end (copying out, 64 KiB at a time);
 *                                  print the bytes and the ns from the first byte to the end
 *   porttool at FROM OFF LEN       mmap: read to the end, then print LEN bytes of the
 *                                  recording from OFF (random access: ipcflow_mmap_bytes)
 *   porttool ping IN OUT ROUNDS SIZE   round trips, print the median in ns
 *   porttool pong IN OUT           echo what comes in
 *
 * gcc -O2 -std=c99 -Wall -o porttool porttool.c -I ..
 */
#include "ipcflow_port.h"
#include <signal.h>

typedef struct {
	int plain; /* 1: fd 0 or 1 */
	ipcflow_port p;
} end_t;

static int die(const char *what)
{
	if (errno == EPIPE) {
		signal(SIGPIPE, SIG_DFL);
		raise(SIGPIPE);
	}
	fprintf(stderr, "porttool: %s\n", what ? what : ipcflow_port_error());
	exit(1);
}

static void open_end(end_t *e, const char *name, int role)
{
	memset(e, 0, sizeof *e);
	if (strcmp(name, "-") == 0) {
		e->plain = 1;
		return;
	}
	if (ipcflow_port_open(&e->p, name, role) < 0)
		die(NULL);
}

static ssize_t end_read(end_t *e, void *buf, size_t n)
{
	ssize_t k;
	if (!e->plain)
		return ipcflow_port_read(&e->p, buf, n);
	do
		k = read(0, buf, n);
	while (k < 0 && errno == EINTR);
	return k;
}

static void end_write(end_t *e, const void *buf, size_t n)
{
	const char *b = buf;
	if (!e->plain) {
		if (ipcflow_port_write(&e->p, buf, n) < 0)
			die(NULL);
		return;
	}
	while (n > 0) {
		ssize_t k = write(1, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("write to stdout");
		b += k;
		n -= (size_t)k;
	}
}

static void end_close(end_t *e)
{
	if (!e->plain && ipcflow_port_close(&e->p) < 0)
		die(NULL);
}

/* shm and mmap both take the in-place calls */
static int inplace(const end_t *e) { return !e->plain && (e->p.type == IPCFLOW_SHM || e->p.type == IPCFLOW_MMAP); }

static long long count(const char *s) { return strtoll(s, NULL, 10); }

static unsigned char buf[256 << 10];

static void copy_ports(const char *from, const char *to, long long limit)
{
	end_t in, out;
	long long moved = 0;
	open_end(&in, from, IPCFLOW_READER);
	open_end(&out, to, IPCFLOW_WRITER);
	if (inplace(&in) && inplace(&out)) {
		while (limit < 0 || moved < limit) {
			size_t have, room;
			const unsigned char *src = ipcflow_shm_borrow(&in.p, &have);
			unsigned char *dst;
			if (src == NULL) {
				if (errno != 0)
					die(NULL);
				break;
			}
			if ((dst = ipcflow_shm_reserve(&out.p, &room)) == NULL)
				die(NULL);
			if (room < have)
				have = room;
			if (limit >= 0 && (long long)have > limit - moved)
				have = (size_t)(limit - moved);
			memcpy(dst, src, have);
			ipcflow_shm_commit(&out.p, have);
			ipcflow_shm_release(&in.p, have);
			moved += (long long)have;
		}
	} else if (limit < 0 && in.plain && inplace(&out)) {
		for (;;) { /* read(2) straight into the ring */
			size_t room;
			unsigned char *span = ipcflow_shm_reserve(&out.p, &room);
			ssize_t n;
			if (span == NULL)
				die(NULL);
			do
				n = read(0, span, room);
			while (n < 0 && errno == EINTR);
			if (n < 0)
				die("read stdin");
			if (n == 0)
				break;
			ipcflow_shm_commit(&out.p, (size_t)n);
		}
	} else if (limit < 0 && out.plain && inplace(&in)) {
		for (;;) { /* write(2) straight from the ring */
			size_t have;
			const void *span = ipcflow_shm_borrow(&in.p, &have);
			if (span == NULL) {
				if (errno != 0)
					die(NULL);
				break;
			}
			end_write(&out, span, have);
			ipcflow_shm_release(&in.p, have);
		}
	} else {
		while (limit < 0 || moved < limit) {
			size_t want = sizeof buf;
			ssize_t n;
			if (limit >= 0 && (long long)want > limit - moved)
				want = (size_t)(limit - moved);
			n = end_read(&in, buf, want);
			if (n < 0)
				die(NULL);
			if (n == 0)
				break;
			end_write(&out, buf, (size_t)n);
			moved += n;
		}
	}
	if (limit >= 0) {
		kill(getpid(), SIGKILL);
		pause();
	}
	end_close(&in);
	end_close(&out);
}

static void send_lines(const char *to)
{
	end_t out;
	static char line[1 << 20];
	open_end(&out, to, IPCFLOW_WRITER);
	while (fgets(line, sizeof line, stdin) != NULL) {
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = 0;
		if (ipcflow_mq_send(&out.p, line, n) < 0)
			die(NULL);
	}
	end_close(&out);
}

static void recv_lines(const char *from)
{
	end_t in;
	unsigned char *msg;
	open_end(&in, from, IPCFLOW_READER);
	msg = malloc((size_t)in.p.msgsize);
	for (;;) {
		ssize_t n = ipcflow_mq_receive(&in.p, msg, (size_t)in.p.msgsize);
		if (n < 0)
			die(NULL);
		if (n == 0)
			break;
		msg[n] = '\n';
		fwrite(msg, 1, (size_t)n + 1, stdout);
	}
	fflush(stdout);
	end_close(&in);
}

static void gen(const char *to, long long total, size_t chunk)
{
	end_t out;
	long long done = 0;
	size_t i;
	if (chunk > sizeof buf - 1)
		chunk = sizeof buf - 1;
	for (i = 0; i < chunk; i++)
		buf[i] = (unsigned char)('a' + i % 26);
	open_end(&out, to, IPCFLOW_WRITER);
	while (done < total) {
		size_t want = (long long)chunk < total - done ? chunk : (size_t)(total - done);
		if (!out.plain && out.p.type == IPCFLOW_MQ && chunk <= (size_t)out.p.msgsize - 1) {
			if (ipcflow_mq_send_room(&out.p, buf, want) < 0) /* buf has room */
				die(NULL);
		} else if (inplace(&out)) {
			size_t room;
			unsigned char *span = ipcflow_shm_reserve(&out.p, &room);
			if (span == NULL)
				die(NULL);
			if (room < want)
				want = room;
			memcpy(span, buf, want);
			ipcflow_shm_commit(&out.p, want);
		} else {
			end_write(&out, buf, want);
		}
		done += (long long)want;
	}
	end_close(&out);
}

static void sink(const char *from)
{
	end_t in;
	long long total = 0;
	int64_t start = 0;
	open_end(&in, from, IPCFLOW_READER);
	for (;;) {
		ssize_t n = end_read(&in, buf, 64 << 10);
		if (n < 0)
			die(NULL);
		if (n == 0)
			break;
		if (total == 0)
			start = ipcflow_now_ns_();
		total += n;
	}
	printf("%lld %lld\n", total, (long long)(ipcflow_now_ns_() - start));
	end_close(&in);
}

static void at(const char *from, long long off, long long n)
{
	end_t in;
	size_t have, len;
	const unsigned char *rec;
	open_end(&in, from, IPCFLOW_READER);
	while (ipcflow_shm_borrow(&in.p, &have) != NULL)
		ipcflow_shm_release(&in.p, have);
	if (errno != 0)
		die(NULL);
	rec = ipcflow_mmap_bytes(&in.p, &len);
	if ((unsigned long long)(off + n) > len)
		die("the recording is shorter");
	end_write(&(end_t){.plain = 1}, rec + off, (size_t)n);
	end_close(&in);
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

static void ping(const char *inName, const char *outName, int rounds, size_t size)
{
	end_t in, out;
	long long *t = malloc(sizeof *t * (size_t)rounds);
	int i;
	open_end(&in, inName, IPCFLOW_READER);
	open_end(&out, outName, IPCFLOW_WRITER);
	for (i = 0; i < rounds; i++) {
		int64_t t0 = ipcflow_now_ns_();
		size_t got = 0;
		end_write(&out, buf, size);
		while (got < size) {
			ssize_t n = end_read(&in, buf + got, size - got);
			if (n <= 0)
				die(n == 0 ? "ping: end of stream" : NULL);
			got += (size_t)n;
		}
		t[i] = ipcflow_now_ns_() - t0;
	}
	qsort(t, (size_t)rounds, sizeof *t, cmp_ll);
	printf("%lld\n", t[rounds / 2]);
	end_close(&out);
	end_close(&in);
}

static void pong(const char *inName, const char *outName)
{
	end_t in, out;
	open_end(&in, inName, IPCFLOW_READER);
	open_end(&out, outName, IPCFLOW_WRITER);
	for (;;) {
		ssize_t n = end_read(&in, buf, 64 << 10);
		if (n < 0)
			die(NULL);
		if (n == 0)
			break;
		end_write(&out, buf, (size_t)n);
	}
	end_close(&out);
	end_close(&in);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "copy") == 0)
		copy_ports(argv[2], argv[3], -1);
	else if (argc == 5 && strcmp(argv[1], "die") == 0)
		copy_ports(argv[2], argv[3], count(argv[4]));
	else if (argc == 3 && strcmp(argv[1], "send") == 0)
		send_lines(argv[2]);
	else if (argc == 3 && strcmp(argv[1], "recv") == 0)
		recv_lines(argv[2]);
	else if (argc == 5 && strcmp(argv[1], "gen") == 0)
		gen(argv[2], count(argv[3]), (size_t)count(argv[4]));
	else if (argc == 3 && strcmp(argv[1], "sink") == 0)
		sink(argv[2]);
	else if (argc == 5 && strcmp(argv[1], "at") == 0)
		at(argv[2], count(argv[3]), count(argv[4]));
	else if (argc == 6 && strcmp(argv[1], "ping") == 0)
		ping(argv[2], argv[3], (int)count(argv[4]), (size_t)count(argv[5]));
	else if (argc == 4 && strcmp(argv[1], "pong") == 0)
		pong(argv[2], argv[3]);
	else {
		fprintf(stderr, "usage: porttool copy|die|send|recv|gen|sink|ping|pong ...\n");
		return 2;
	}
	return 0;
}
