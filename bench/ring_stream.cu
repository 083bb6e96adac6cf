/* The weight ring's load style alone, without a model: every SM streams its share of a
 * 2 GiB buffer through a ring of S slots of Z bytes filled by TMA bulk copies
 * (kernels/tasks/ring.cuh's primitives), the way mk_gemv_ring consumes them: all threads
 * wait on the slot's mbarrier, read it, pass a CTA barrier, thread 0 refills the slot.
 * Prints GB/s per (S, Z) and per consumer style, to size the ring and to see whether the
 * per-chunk barrier costs bandwidth. Standalone (not part of `make`):
 *   nvcc -O3 -std=c++17 -arch=sm_90a -Iinclude -Isrc -Ikernels bench/ring_stream.cu -o ring_stream */
#include "tasks/ring.cuh"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

static __device__ __forceinline__ void mk_mbar_wait(uint64_t *bar, uint32_t parity)
{
    while (!mk_mbar_try_wait(bar, parity)) {
    }
}

/* mode 0: every thread reads its 16-byte words of the slot, CTA barrier, refill.
 * mode 1: no reads: thread 0 waits for the copy and refills at once (the TMA ceiling).
 * mode 2: the consumer of mk_gemv_ring at B = 1 (FMAs with an activation row, warp sums,
 *         per-warp partials, CTA barrier, row sums); slots of 16 KiB (two rows of 4096). */
__global__ void __launch_bounds__(MK_GPU_THREADS, 1)
ring_stream(const char *src, uint64_t bytes, int stages, int zbytes, int mode, uint32_t *sink)
{
    extern __shared__ __align__(128) char smem[];
    uint64_t *bar = reinterpret_cast<uint64_t *>(smem);
    char *ring = smem + 1024;
    const uint64_t per = bytes / gridDim.x / zbytes * zbytes;
    const char *base = src + per * blockIdx.x;
    const uint32_t n = (uint32_t)(per / zbytes);
    uint32_t issued = 0;
    if (threadIdx.x == 0) {
        for (int i = 0; i < stages; i++) mk_mbar_init(&bar[i], 1);
        mk_mbar_fence_init();
        for (; issued < n && issued < (uint32_t)stages; issued++) {
            mk_mbar_expect_tx(&bar[issued], zbytes);
            mk_bulk_load(ring + (size_t)issued * zbytes, base + (size_t)issued * zbytes, zbytes,
                         &bar[issued]);
        }
    }
    __syncthreads();
    uint32_t x = 0;
    for (uint32_t c = 0; c < n; c++) {
        const uint32_t slot = c % stages, par = (c / stages) & 1;
        if (mode == 0) {
            mk_mbar_wait(&bar[slot], par);
            const uint4 *w = reinterpret_cast<const uint4 *>(ring + (size_t)slot * zbytes);
            for (int i = threadIdx.x; i < zbytes / 16; i += blockDim.x) {
                uint4 v = w[i];
                x ^= v.x ^ v.y ^ v.z ^ v.w;
            }
            __syncthreads();
        } else if (mode == 2) { /* mk_gemv_ring's consumer at B = 1, K = 4096 (2 rows a slot) */
            const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
            float *xs = reinterpret_cast<float *>(smem + 1024 + (size_t)stages * zbytes);
            float *pb = xs + 4096 + (c & 1) * 16;
            mk_mbar_wait(&bar[slot], par);
            const uint16_t *cw = reinterpret_cast<const uint16_t *>(ring + (size_t)slot * zbytes);
            const uint32_t v0 = warp * 64, k0 = (v0 % 512) * 8;
            float acc = 0.0f;
            for (int j = 0; j < 2; j++) {
                float f[8];
                mk_unpack8(mk_lds16(cw + (size_t)(v0 + j * 32 + lane) * 8), f);
                const float *xb = xs + k0 + j * 256 + lane * 4;
                float4 x0 = *reinterpret_cast<const float4 *>(xb);
                float4 x1 = *reinterpret_cast<const float4 *>(xb + 128);
                acc = fmaf(f[0], x0.x, acc); acc = fmaf(f[1], x0.y, acc);
                acc = fmaf(f[2], x0.z, acc); acc = fmaf(f[3], x0.w, acc);
                acc = fmaf(f[4], x1.x, acc); acc = fmaf(f[5], x1.y, acc);
                acc = fmaf(f[6], x1.z, acc); acc = fmaf(f[7], x1.w, acc);
            }
            acc = mk_warp_sum(acc);
            if (lane == 0) pb[warp] = acc;
            __syncthreads();
            if (threadIdx.x < 2) {
                float s = 0.0f;
                for (int w = threadIdx.x * 8; w < threadIdx.x * 8 + 8; w++) s += pb[w];
                x ^= __float_as_uint(s);
            }
        } else if (threadIdx.x == 0) {
            mk_mbar_wait(&bar[slot], par);
        }
        if (threadIdx.x == 0 && issued < n) {
            const uint32_t s2 = issued % stages;
            mk_mbar_expect_tx(&bar[s2], zbytes);
            mk_bulk_load(ring + (size_t)s2 * zbytes, base + (size_t)issued * zbytes, zbytes, &bar[s2]);
            issued++;
        }
    }
    if (x == 0x9e3779b9u) sink[0] = x;
}

int main(void)
{
    const uint64_t bytes = 2ull << 30;
    char *buf;
    uint32_t *sink;
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    if (cudaMalloc(&buf, bytes) != cudaSuccess || cudaMalloc(&sink, 4) != cudaSuccess) return 1;
    cudaMemset(buf, 1, bytes);
    cudaFuncSetAttribute(ring_stream, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
    const int cfg[][2] = {{4, 16384}, {8, 16384}, {12, 16384}, {16, 8192},
                          {24, 8192},  {4, 32768}, {6, 32768},  {2, 65536}, {3, 65536}};
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    printf("| slots | slot bytes | in flight | GB/s read+barrier | GB/s TMA only | GB/s gemv B=1 |\n"
           "|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        int S = cfg[k][0], Z = cfg[k][1];
        size_t smem = 1024 + (size_t)S * Z;
        if (smem > 227 * 1024) continue;
        smem += 4096 * 4 + 64 * 4;
        if (smem > 227 * 1024) continue;
        double gbps[3] = {0, 0, 0};
        for (int mode = 0; mode < 3; mode++) {
            if (mode == 2 && Z != 16384) continue;
            float best = 1e30f;
            for (int r = 0; r < 4; r++) {
                cudaEventRecord(e0);
                ring_stream<<<sms, MK_GPU_THREADS, smem>>>(buf, bytes, S, Z, mode, sink);
                cudaEventRecord(e1);
                cudaEventSynchronize(e1);
                float ms;
                cudaEventElapsedTime(&ms, e0, e1);
                if (r && ms < best) best = ms;
            }
            gbps[mode] = (double)(bytes / sms / Z * Z) * sms / (best * 1e6);
        }
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) {
            printf("error: %s\n", cudaGetErrorString(err));
            return 1;
        }
        printf("| %d | %d | %d KiB | %.0f | %.0f | %.0f |\n", S, Z, S * Z / 1024, gbps[0], gbps[1],
               gbps[2]);
    }
    return 0;
}
