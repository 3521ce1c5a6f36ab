/* semc: the C side of the interop tests. It uses nothing but glibc's
 * sem_open/sem_wait/sem_post, as a native stage would.
 *
 *   semc pingpong A B N LOG   N times: wait A, append "C i" to LOG, post B
 *   semc mutex S N LOG [HOLD [PAUSE]]
 *                             N times: wait S, append "C+" and "C-" to LOG
 *                             HOLD microseconds apart (default 20), post S,
 *                             then pause PAUSE microseconds (default 0)
 *   semc create S VALUE       sem_open(O_CREAT|O_EXCL, 0600, VALUE)
 *   semc value S              print sem_getvalue
 */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sem_t *open_sem(const char *name) {
	sem_t *s = sem_open(name, 0);
	if (s == SEM_FAILED) {
		fprintf(stderr, "semc: sem_open %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return s;
}

static void append(int fd, const char *line) {
	size_t n = strlen(line);
	if (write(fd, line, n) != (ssize_t)n) {
		fprintf(stderr, "semc: write log: %s\n", strerror(errno));
		exit(1);
	}
}

static void take(sem_t *s) {
	while (sem_wait(s) != 0) {
		if (errno != EINTR) {
			fprintf(stderr, "semc: sem_wait: %s\n", strerror(errno));
			exit(1);
		}
	}
}

int main(int argc, char **argv) {
	if (argc == 6 && strcmp(argv[1], "pingpong") == 0) {
		sem_t *a = open_sem(argv[2]), *b = open_sem(argv[3]);
		int n = atoi(argv[4]);
		int fd = open(argv[5], O_WRONLY | O_APPEND);
		if (fd < 0) { perror("semc: open log"); return 1; }
		char line[64];
		for (int i = 0; i < n; i++) {
			take(a);
			snprintf(line, sizeof line, "C %d\n", i);
			append(fd, line);
			if (sem_post(b) != 0) { perror("semc: sem_post"); return 1; }
		}
		return 0;
	}
	if (argc >= 5 && argc <= 7 && strcmp(argv[1], "mutex") == 0) {
		sem_t *s = open_sem(argv[2]);
		int n = atoi(argv[3]);
		int fd = open(argv[4], O_WRONLY | O_APPEND);
		if (fd < 0) { perror("semc: open log"); return 1; }
		long hold = argc > 5 ? atol(argv[5]) : 20, pause = argc > 6 ? atol(argv[6]) : 0;
		struct timespec th = {hold / 1000000, hold % 1000000 * 1000};
		struct timespec tp = {pause / 1000000, pause % 1000000 * 1000};
		for (int i = 0; i < n; i++) {
			take(s);
			append(fd, "C+\n");
			nanosleep(&th, NULL);
			append(fd, "C-\n");
			if (sem_post(s) != 0) { perror("semc: sem_post"); return 1; }
			if (pause > 0)
				nanosleep(&tp, NULL);
		}
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "create") == 0) {
		sem_t *s = sem_open(argv[2], O_CREAT | O_EXCL, 0600, (unsigned)atoi(argv[3]));
		if (s == SEM_FAILED) { perror("semc: sem_open"); return 1; }
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "value") == 0) {
		int v;
		if (sem_getvalue(open_sem(argv[2]), &v) != 0) { perror("semc: sem_getvalue"); return 1; }
		printf("%d\n", v);
		return 0;
	}
	fprintf(stderr, "usage: semc pingpong A B N LOG | mutex S N LOG [HOLD [PAUSE]] | create S VALUE | value S\n");
	return 2;
}
