/* bench/cpu_sgemm_rows: is OpenBLAS sgemm batch-invariant? For C = A @ B^T (row-major, B [N, K] as weights
 * are stored), checks whether row i of C is bitwise the same when A has M = 1..128 rows, when A starts at a
 * row offset, and when N is split; for a few (N, K). usage: cpu_sgemm_rows (OPENBLAS_CORETYPE picks a kernel) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(int K, int N) {
  const int M = 128;
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N),
        *r = malloc(sizeof(float) * M * N);
  srand(1);
  for (int i = 0; i < M * K; i++) a[i] = rand() / (float)RAND_MAX - 0.5f;
  for (int i = 0; i < N * K; i++) b[i] = rand() / (float)RAND_MAX - 0.5f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, r, N);
  int first_bad = 0, nbad = 0;
  for (int m = 1; m <= M; m++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, N, K, 1, a, K, b, K, 0, c, N);
    int bad = 0;
    for (int i = 0; i < m; i++) bad |= memcmp(c + i * N, r + i * N, sizeof(float) * N) != 0;
    if (bad && !nbad++) first_bad = m;
  }
  int last_bad = 0;
  for (int m = M; m >= 1 && nbad; m--) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, N, K, 1, a, K, b, K, 0, c, N);
    int bad = 0;
    for (int i = 0; i < m; i++) bad |= memcmp(c + i * N, r + i * N, sizeof(float) * N) != 0;
    if (bad) {
      last_bad = m;
      break;
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 64, N, K, 1, a + 5 * K, K, b, K, 0, c, N);
  int off_bad = memcmp(c, r + 5 * N, sizeof(float) * 64 * N) != 0;
  printf("K %5d N %4d: M=1..128: %3d M values differ from M=128 (first %d, last %d; M*N*K at last %.2g); "
         "row offset 5: %s\n", K, N, nbad, first_bad, last_bad, (double)last_bad * N * K, off_bad ? "differs" : "same");
  free(a), free(b), free(c), free(r);
  return 0;
}

int main(void) {
  openblas_set_num_threads(1);
  printf("%s\n", openblas_get_config());
  int shapes[][2] = {{64, 64}, {172, 256}, {1024, 64}, {1024, 256}, {4096, 256}, {1536, 256}, {4096, 128}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check(shapes[i][0], shapes[i][1]);
  return 0;
}
