// Reproducer for cross-vCPU kernel text patching under QEMU TCG: no BPF, no kmemprof.
//   stress hammer          fork/exec, open/close, stat (allocator traffic), forever
//   stress tp EVENTDIR     toggle a trace event's enable (static key + static call patching)
//   stress kprobe SYM      define/enable/disable/delete a kprobe event on SYM (ftrace-based kprobe)
//   stress ftrace SYM      function tracer on SYM only, on/off
// Togglers print a count every 10 s; they pin themselves to CPU 0 (EMU_PIN=-1: no pin).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T "/sys/kernel/tracing/"

static void die(const char *what) {
	fprintf(stderr, "EMU-ERROR %s: %s\n", what, strerror(errno));
	exit(1);
}

static void wr(const char *path, const char *s, int append) {
	int fd = open(path, O_WRONLY | (append ? O_APPEND : O_TRUNC));
	if (fd < 0) die(path);
	if (write(fd, s, strlen(s)) < 0) {
		fprintf(stderr, "EMU-ERROR write '%s' to %s: %s\n", s, path, strerror(errno));
		exit(1);
	}
	close(fd);
}

static double uptime(void) {
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
	if (cpu < 0) return;
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof s, &s);
}

static unsigned long count;
static double last;
static void tick(const char *mode) {
	count++;
	double now = uptime();
	if (now - last >= 10) {
		last = now;
		printf("EMU-COUNT %s %lu uptime=%.1f\n", mode, count, now);
		fflush(stdout);
	}
}

static void hammer(void) {
	char name[64];
	struct stat st;
	mkdir("/tmp/f", 0755);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof name, "/tmp/f/%d", i);
		int fd = open(name, O_CREAT | O_WRONLY, 0644);
		if (fd >= 0) close(fd);
	}
	for (unsigned long n = 0;; n++) {
		for (int i = 0; i < 200; i++) {
			snprintf(name, sizeof name, "/tmp/f/%lu", (n * 200 + i) % 2000);
			stat(name, &st);
			snprintf(name, sizeof name, "/tmp/nope/%lu", n * 200 + i); // negative dentries
			stat(name, &st);
		}
		int fd = open("/proc/self/stat", O_RDONLY);
		if (fd >= 0) close(fd);
		pid_t p = fork();
		if (p == 0) {
			execl("/bin/busybox", "true", (char *)0);
			_exit(127);
		}
		if (p > 0) waitpid(p, 0, 0);
	}
}

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	const char *pinenv = getenv("EMU_PIN");
	int cpu = pinenv ? atoi(pinenv) : 0;
	setvbuf(stdout, 0, _IOLBF, 0);
	last = uptime();
	if (!strcmp(argv[1], "hammer")) {
		hammer();
	} else if (!strcmp(argv[1], "tp") && argc > 2) {
		char path[256];
		snprintf(path, sizeof path, T "events/%s/enable", argv[2]);
		pin(cpu);
		for (;;) {
			wr(path, "1", 0);
			wr(path, "0", 0);
			tick("tp");
		}
	} else if (!strcmp(argv[1], "kprobe") && argc > 2) {
		char def[256];
		snprintf(def, sizeof def, "p:emuk %s", argv[2]);
		pin(cpu);
		for (;;) {
			wr(T "kprobe_events", def, 1);
			wr(T "events/kprobes/emuk/enable", "1", 0);
			wr(T "events/kprobes/emuk/enable", "0", 0);
			wr(T "kprobe_events", "-:emuk", 1);
			tick("kprobe");
		}
	} else if (!strcmp(argv[1], "ftrace") && argc > 2) {
		pin(cpu);
		wr(T "set_ftrace_filter", argv[2], 0);
		for (;;) {
			wr(T "current_tracer", "function", 0);
			wr(T "current_tracer", "nop", 0);
			tick("ftrace");
		}
	}
	return 2;
}
