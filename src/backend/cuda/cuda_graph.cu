/* backend/cuda/cuda_graph.cu: the optional graph_begin/graph_end ops: a step's op sequence captured once as a
 * CUDA graph per caller-chosen key (e.g. a decode batch-size bucket) and replayed afterwards, which removes the
 * per-kernel launch cost of a decode step. The first step with a key runs eagerly (growing scratch and building
 * matmul plans), the second is captured, later ones replay. Graphs are dropped when a buffer they point into
 * (batch metadata, scratch) is reallocated. */
#include "backend/cuda/cuda_common.h"
#include <stdlib.h>

typedef struct cu_graph_ent {
  uint64_t key;
  int seen;                 /* steps run with this key */
  cudaGraphExec_t exec;     /* NULL until captured */
} cu_graph_ent;

#define MAX_GRAPHS 256 /* decode buckets x block-table widths (powers of two) */

void cu_graphs_release(ig_backend *be) {
  cu_impl *c = CU(be);
  if (!c->graphs) return;
  for (int i = 0; i < c->n_graphs; i++)
    if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
  free(c->graphs);
  c->graphs = NULL;
  c->n_graphs = 0;
}

static int graph_begin(ig_backend *be, uint64_t key) {
  cu_impl *c = CU(be);
  if (c->capturing) FAIL(be, "cuda graph_begin: already capturing");
  if (!c->graphs) {
    c->graphs = (cu_graph_ent *)calloc(MAX_GRAPHS, sizeof(cu_graph_ent));
    if (!c->graphs) FAIL(be, "cuda: out of host memory");
  }
  cu_graph_ent *g = NULL;
  for (int i = 0; i < c->n_graphs; i++)
    if (c->graphs[i].key == key) g = &c->graphs[i];
  if (!g) {
    if (c->n_graphs == MAX_GRAPHS) { /* full: run eagerly */
      c->capture_key = -1;
      return 0;
    }
    g = &c->graphs[c->n_graphs++];
    g->key = key, g->seen = 0, g->exec = NULL;
  }
  c->cur_graph = (int)(g - c->graphs);
  if (g->exec) {
    CUDA_CHECK(be, cudaGraphLaunch(g->exec, c->st));
    c->replaying = 1;
    return 1;
  }
  if (g->seen++ == 0) return 0; /* first time: eager warm-up */
  CUDA_CHECK(be, cudaStreamBeginCapture(c->st, cudaStreamCaptureModeRelaxed));
  c->capturing = 1;
  return 0;
}

static int graph_end(ig_backend *be) {
  cu_impl *c = CU(be);
  if (c->replaying) {
    c->replaying = 0;
    return 0;
  }
  if (!c->capturing) return 0;
  c->capturing = 0;
  cudaGraph_t graph;
  CUDA_CHECK(be, cudaStreamEndCapture(c->st, &graph));
  cu_graph_ent *g = &c->graphs[c->cur_graph];
  cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    g->exec = NULL;
    FAIL(be, "%s:%d: cudaGraphInstantiate: %s", __FILE__, __LINE__, cudaGetErrorString(e));
  }
  CUDA_CHECK(be, cudaGraphLaunch(g->exec, c->st));
  return 0;
}

/* An op failing mid-capture leaves the stream capturing: end it and drop the partial graph. */
void cu_graph_abort(ig_backend *be) {
  cu_impl *c = CU(be);
  if (!c->capturing) return;
  cudaGraph_t graph = NULL;
  cudaStreamEndCapture(c->st, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  c->capturing = 0;
}

static void graph_reset(ig_backend *be) {
  cu_graph_abort(be);
  cu_graphs_release(be);
}

void cu_graphs_install(ig_backend *be) {
  be->graph_begin = graph_begin;
  be->graph_end = graph_end;
  be->graph_reset = graph_reset;
}
