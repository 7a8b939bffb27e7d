/* fp32 FMA throughput of this CPU, all threads (OpenMP): the "peak" that benchmarks/unet_speed.py
 * divides by. Independent FMA chains (more than latency x pipes) on the widest vectors the
 * compiler targets with -march=native; prints the best GFLOP/s of several repetitions.
 * Built and run by unet_speed.py:  cc -O2 -march=native -fopenmp fma_peak.c -o fma_peak */
#include <omp.h>
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vec __attribute__((vector_size(LANES * 4)));
#define CHAINS 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const long iters = 20000000;  /* per chain and thread: ~0.1 s at 3 GHz */
    double best = 0.0;
    float sink = 0.0f;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now();
#pragma omp parallel reduction(+ : sink)
        {
            vec a[CHAINS], b, c;
            for (int l = 0; l < LANES; l++) { b[l] = 0.999999f; c[l] = 1e-7f; }
            for (int i = 0; i < CHAINS; i++)
                for (int l = 0; l < LANES; l++) a[i][l] = (float)(i + l);
            for (long k = 0; k < iters; k++) {
#pragma GCC unroll 12
                for (int i = 0; i < CHAINS; i++) a[i] = a[i] * b + c; /* contracted to one FMA */
            }
            for (int i = 0; i < CHAINS; i++)
                for (int l = 0; l < LANES; l++) sink += a[i][l];
        }
        double gflops = 2.0 * LANES * CHAINS * (double)iters * omp_get_max_threads() / (now() - t0) / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("%.1f %d %d %g\n", best, omp_get_max_threads(), LANES, sink);
    return 0;
}
