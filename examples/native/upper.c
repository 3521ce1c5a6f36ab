/*
 * upper: a native ipcflow stage in C. It reads its port in and writes its
 * port out, ASCII letters upper-cased. Between two shm ports it works in
 * place: each input span is read where it lies in the input ring and
 * written once, straight into reserved space of the output ring. Other
 * port types go through the stream calls.
 *
 * Build (docs/native.md):  gcc -O2 -std=c99 -Wall -o upper upper.c -I ../../native/c
 */
#define _GNU_SOURCE
#include <signal.h>
#include "ipcflow_port.h"

static void upcase(unsigned char *dst, const unsigned char *src, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		unsigned char c = src[i];
		dst[i] = (c >= 'a' && c <= 'z') ? (unsigned char)(c - 32) : c;
	}
}

static int fail(void)
{
	if (errno == EPIPE) { /* every reader gone: end as a pipe's writer does */
		signal(SIGPIPE, SIG_DFL);
		raise(SIGPIPE);
	}
	fprintf(stderr, "upper: %s\n", ipcflow_port_error());
	return 1;
}

int main(void)
{
	ipcflow_port in, out;
	if (ipcflow_port_open(&in, "in", IPCFLOW_READER) < 0 || ipcflow_port_open(&out, "out", IPCFLOW_WRITER) < 0)
		return fail();
	if (in.type != IPCFLOW_MQ && out.type != IPCFLOW_MQ) { /* shm or mmap: in place */
		for (;;) {
			size_t have, room;
			const unsigned char *src = ipcflow_shm_borrow(&in, &have);
			unsigned char *dst;
			if (src == NULL) {
				if (errno != 0)
					return fail();
				break;
			}
			dst = ipcflow_shm_reserve(&out, &room);
			if (dst == NULL)
				return fail();
			if (room < have)
				have = room;
			upcase(dst, src, have);
			ipcflow_shm_commit(&out, have);
			ipcflow_shm_release(&in, have);
		}
	} else {
		static unsigned char buf[1 << 16];
		for (;;) {
			ssize_t n = ipcflow_port_read(&in, buf, sizeof buf);
			if (n < 0)
				return fail();
			if (n == 0)
				break;
			upcase(buf, buf, (size_t)n);
			if (ipcflow_port_write(&out, buf, (size_t)n) < 0)
				return fail();
		}
	}
	ipcflow_port_close(&in);
	if (ipcflow_port_close(&out) < 0)
		return fail();
	return 0;
}
