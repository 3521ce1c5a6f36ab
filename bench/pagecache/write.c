// Writes SIZE MiB into a new, unlinked file in DIR with write(2) calls of
// each CHUNK size in turn, pausing PAUSE seconds before each run, and prints
// the rate: how fast new page-cache pages can be filled at all, the floor
// under an mmap edge, which needs new pages for the whole stream.
// Usage: write DIR SIZE_MIB PAUSE_S CHUNK...  (bench/pagecache/run.sh runs it)
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	if (argc < 5) {
		fprintf(stderr, "usage: %s DIR SIZE_MIB PAUSE_S CHUNK...\n", argv[0]);
		return 2;
	}
	size_t size = (size_t)atoi(argv[2]) << 20, max = 0;
	for (int i = 4; i < argc; i++)
		if ((size_t)atol(argv[i]) > max)
			max = atol(argv[i]);
	char *buf = malloc(max), path[4096];
	memset(buf, 'x', max);
	snprintf(path, sizeof path, "%s/pagecache-bench.%d", argv[1], getpid());
	for (int i = 4; i < argc; i++) {
		size_t chunk = atol(argv[i]);
		sleep(atoi(argv[3]));
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || unlink(path) < 0) {
			perror(path);
			return 1;
		}
		double t = now();
		for (size_t off = 0; off < size; off += chunk)
			if (write(fd, buf, chunk) != (ssize_t)chunk) {
				perror("write");
				return 1;
			}
		double d = now() - t;
		printf("%8zu-byte writes: %6.0f ms  %5.2f GB/s\n", chunk, d * 1e3, size / d / 1e9);
		close(fd);
	}
	return 0;
}
