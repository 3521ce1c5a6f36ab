/* The glibc side of the semaphore benchmark (run.sh prints it beside the Go
 * side, locks/bench_test.go). Both measure the same two things:
 *
 *   bench uncontended N   N sem_wait+sem_post pairs on one named semaphore,
 *                         no other process: the cost of the fast path
 *   bench pingpong N      two processes alternate N times on two named
 *                         semaphores (parent: post A, wait B; child: wait
 *                         A, post B): every round is a futex wake and sleep
 *                         each way
 *
 * It prints "NAME N NS_PER_OP". */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static sem_t *make(const char *name, unsigned value) {
	sem_unlink(name);
	sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, value);
	if (s == SEM_FAILED) {
		fprintf(stderr, "bench: sem_open %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return s;
}

static void take(sem_t *s) {
	while (sem_wait(s) != 0)
		if (errno != EINTR) { perror("bench: sem_wait"); exit(1); }
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: bench uncontended|pingpong N\n");
		return 2;
	}
	long n = atol(argv[2]);
	char a_name[64], b_name[64];
	snprintf(a_name, sizeof a_name, "/ipcflow.bench.%d.a", (int)getpid());
	snprintf(b_name, sizeof b_name, "/ipcflow.bench.%d.b", (int)getpid());

	if (strcmp(argv[1], "uncontended") == 0) {
		sem_t *s = make(a_name, 1);
		sem_unlink(a_name);
		double t0 = now_ns();
		for (long i = 0; i < n; i++) {
			take(s);
			sem_post(s);
		}
		printf("uncontended %ld %.1f\n", n, (now_ns() - t0) / n);
		return 0;
	}
	if (strcmp(argv[1], "pingpong") == 0) {
		sem_t *a = make(a_name, 0), *b = make(b_name, 0);
		pid_t pid = fork();
		if (pid < 0) { perror("bench: fork"); return 1; }
		if (pid == 0) {
			/* The child opens the names, as an unrelated process would. */
			sem_t *ca = sem_open(a_name, 0), *cb = sem_open(b_name, 0);
			if (ca == SEM_FAILED || cb == SEM_FAILED) { perror("bench: child sem_open"); _exit(1); }
			for (long i = 0; i <= n; i++) {
				take(ca);
				sem_post(cb);
			}
			_exit(0);
		}
		/* One round trip first, so the child is up before the clock starts. */
		sem_post(a);
		take(b);
		sem_unlink(a_name);
		sem_unlink(b_name);
		double t0 = now_ns();
		for (long i = 0; i < n; i++) {
			sem_post(a);
			take(b);
		}
		double el = now_ns() - t0;
		int st;
		waitpid(pid, &st, 0);
		printf("pingpong %ld %.1f\n", n, el / n);
		return 0;
	}
	fprintf(stderr, "usage: bench uncontended|pingpong N\n");
	return 2;
}
