/*
 * forest_walk.c: the compiled forest's native walker, loaded with ctypes by lambda_forest/native.py.
 *
 * It walks the arrays of `compile_forest` (lambda_forest/compiled.py) exactly as the numpy walk does,
 * so its answers are scikit-learn's to the last bit:
 *   - rows are float32; a row goes left when x <= threshold, the threshold being the float64 split
 *     rounded down to float32 (the same answer for every float32 x); a NaN follows missing_left;
 *   - leaves point at themselves (both children) with threshold +inf, so a row that reached one stays;
 *   - per-tree leaf values are added to each row's sum in tree order starting from zero, then divided
 *     by the number of trees, as RandomForest*.predict(_proba) does.
 *
 * Build: -O2 -ffp-contract=off and never -ffast-math. The walk compares and adds, nothing else; fast-math
 * would let the compiler reorder the per-tree sums (reassociation changes the rounding) and treat NaN
 * as impossible (breaking the missing-value route); contraction has no a*b+c to fuse today, and is off
 * so that none can appear later.
 *
 * Speed: rows go through the forest tree by tree (a tree's nodes stay in cache while the rows pass), about
 * CHUNK_BYTES of rows at a time (so the rows stay in cache too); LOCKSTEP rows walk a tree together, one
 * level at a time, so their memory loads overlap instead of waiting on each other; rows without NaN take a
 * walk without the missing-value test. Large batches are split across threads by rows: each thread owns
 * its rows' sums, so the order of additions is the same whatever the thread count.
 *
 * No global state, no allocation: the caller owns every array. To add another walk over the same arrays
 * (leaf ids, decision paths), write a row-range function like predict_rows and export it through
 * run_split the way lf_predict does.
 */

#include <pthread.h>
#include <stdint.h>

#define LF_ABI_VERSION 2
#define LOCKSTEP 16            /* rows walked together through a tree */
#define CHUNK_BYTES (1 << 20)  /* rows (this many bytes of them) walked through every tree before the next */
#define CHECK_EVERY 4          /* levels between checks that a group still has rows off their leaves */
#define MAX_THREADS 64

/* The compiled forest, as arrays of `compile_forest` (node ids are global across trees). */
typedef struct {
    int32_t n_trees;
    int32_t n_features;
    int32_t n_outputs;            /* values per leaf: classes for a classifier, 1 for a regressor */
    const int32_t *roots;         /* [n_trees] node id of each tree's root */
    const int32_t *depths;        /* [n_trees] each tree's depth (levels below its root) */
    const int32_t *children;      /* [2 * nodes] children[2 * node + went_left]; a leaf's are itself */
    const int32_t *feature;       /* [nodes] feature tested (0 at leaves) */
    const float *threshold;       /* [nodes] go left when x <= threshold (+inf at leaves) */
    const uint8_t *missing_left;  /* [nodes] 1 when a NaN goes left */
    const double *value;          /* [nodes * n_outputs] a leaf's values */
} lf_forest;

typedef void (*row_range_fn)(const lf_forest *forest, const float *rows, int64_t n_rows, void *out);

int lf_abi_version(void) { return LF_ABI_VERSION; }

/* One level for `n` rows: each moves to its child (a row on a leaf stays). Returns whether any moved. */
static inline int step(const lf_forest *f, const float *rows, int n, int32_t *node, const int nan_routes) {
    int moved = 0;
    for (int i = 0; i < n; i++) {
        const int32_t id = node[i];
        const float x = rows[(int64_t)i * f->n_features + f->feature[id]];
        int went_left = x <= f->threshold[id];
        if (nan_routes && x != x) went_left = f->missing_left[id]; /* NaN: no comparison holds */
        const int32_t next = f->children[2 * (int64_t)id + went_left];
        moved |= next != id;
        node[i] = next;
    }
    return moved;
}

/* Walks `n` (<= LOCKSTEP) rows through one tree; `node` ends holding each row's leaf. */
static inline void walk_tree(const lf_forest *f, int32_t tree, const float *rows, int n, int32_t *node,
                             const int nan_routes) {
    const int32_t root = f->roots[tree];
    for (int i = 0; i < n; i++) node[i] = root;
    for (int level = 1, depth = f->depths[tree]; level <= depth; level++) {
        const int moved = step(f, rows, n, node, nan_routes);
        if (level % CHECK_EVERY == 0 && !moved) break; /* every row sits on its leaf */
    }
}

static int any_nan(const float *values, int64_t n) {
    int found = 0;
    for (int64_t i = 0; i < n; i++) found |= values[i] != values[i];
    return found;
}

/* out[n_rows * n_outputs]: the mean of the trees' leaf values for each row. */
static void predict_rows(const lf_forest *f, const float *rows, int64_t n_rows, void *out_) {
    double *out = out_;
    const int64_t n_out = f->n_outputs;
    int32_t leaf[LOCKSTEP];
    const int nan_routes = any_nan(rows, n_rows * f->n_features);
    for (int64_t i = 0; i < n_rows * n_out; i++) out[i] = 0.0;
    int64_t chunk_rows = CHUNK_BYTES / ((int64_t)sizeof(float) * f->n_features);
    if (chunk_rows < LOCKSTEP) chunk_rows = LOCKSTEP;
    for (int64_t chunk = 0; chunk < n_rows; chunk += chunk_rows) {
        const int64_t chunk_end = chunk + chunk_rows < n_rows ? chunk + chunk_rows : n_rows;
        for (int32_t tree = 0; tree < f->n_trees; tree++) {
            for (int64_t start = chunk; start < chunk_end; start += LOCKSTEP) {
                const int n = chunk_end - start < LOCKSTEP ? (int)(chunk_end - start) : LOCKSTEP;
                if (nan_routes) walk_tree(f, tree, rows + start * f->n_features, n, leaf, 1);
                else walk_tree(f, tree, rows + start * f->n_features, n, leaf, 0);
                for (int i = 0; i < n; i++) {
                    double *sum = out + (start + i) * n_out;
                    const double *value = f->value + (int64_t)leaf[i] * n_out;
                    for (int64_t k = 0; k < n_out; k++) sum[k] += value[k];
                }
            }
        }
    }
    for (int64_t i = 0; i < n_rows * n_out; i++) out[i] /= f->n_trees;
}

typedef struct {
    row_range_fn run;
    const lf_forest *forest;
    const float *rows;
    int64_t n_rows;
    void *out;
} task;

static void *run_task(void *arg) {
    const task *t = arg;
    t->run(t->forest, t->rows, t->n_rows, t->out);
    return 0;
}

/* Splits rows into contiguous ranges, one per thread; the calling thread takes the last range. A thread
 * that cannot be started leaves its range to the calling thread, so the answer never depends on it. */
static void run_split(row_range_fn run, const lf_forest *f, const float *rows, int64_t n_rows, void *out,
                      int64_t out_row_bytes, int n_threads) {
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if (n_threads > n_rows) n_threads = (int)n_rows;
    if (n_threads < 1) n_threads = 1;
    task tasks[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS];
    const int64_t per_thread = n_rows / n_threads, extra = n_rows % n_threads;
    int64_t first = 0;
    for (int t = 0; t < n_threads; t++) {
        const int64_t count = per_thread + (t < extra);
        tasks[t] = (task){run, f, rows + first * f->n_features, count, (char *)out + first * out_row_bytes};
        first += count;
    }
    for (int t = 0; t < n_threads - 1; t++) started[t] = pthread_create(&threads[t], 0, run_task, &tasks[t]) == 0;
    run_task(&tasks[n_threads - 1]);
    for (int t = 0; t < n_threads - 1; t++) {
        if (started[t]) pthread_join(threads[t], 0);
        else run_task(&tasks[t]);
    }
}

/*
 * lf_predict: what predict_proba (classifier) or predict (regressor) returns for `n_rows` rows.
 *   rows  float32 [n_rows * n_features], C order
 *   out   float64 [n_rows * n_outputs], written (never read)
 *   n_threads  threads to split the rows across (1 walks on the calling thread only)
 */
void lf_predict(const lf_forest *forest, const float *rows, int64_t n_rows, double *out, int n_threads) {
    if (n_rows <= 0) return;
    run_split(predict_rows, forest, rows, n_rows, out, (int64_t)sizeof(double) * forest->n_outputs, n_threads);
}

/* One level for `n` rows, as `step`, adding each move's change of node value to the row's contributions
 * (`contribution[i * n_features * n_outputs + feature * n_outputs + k]`) for the feature split on. */
static inline int step_path(const lf_forest *f, const float *rows, int n, int32_t *node, double *contribution,
                            const int nan_routes) {
    const int64_t n_out = f->n_outputs, width = (int64_t)f->n_features * n_out;
    int moved = 0;
    for (int i = 0; i < n; i++) {
        const int32_t id = node[i];
        const float x = rows[(int64_t)i * f->n_features + f->feature[id]];
        int went_left = x <= f->threshold[id];
        if (nan_routes && x != x) went_left = f->missing_left[id];
        const int32_t next = f->children[2 * (int64_t)id + went_left];
        if (next != id) {
            double *sum = contribution + i * width + (int64_t)f->feature[id] * n_out;
            const double *from = f->value + (int64_t)id * n_out, *to = f->value + (int64_t)next * n_out;
            for (int64_t k = 0; k < n_out; k++) sum[k] += to[k] - from[k];
            moved = 1;
        }
        node[i] = next;
    }
    return moved;
}

/* out[n_rows * n_features * n_outputs]: path contributions (Saabas). Along each row's route through each
 * tree, the change of the node value at each step is added to the row's entry for the feature split on,
 * tree by tree in order, then divided by the number of trees: the mean root value (the bias) plus the sum
 * over features is what predict_rows gives, up to rounding. Rows go through the trees as in predict_rows,
 * in chunks sized so that the rows and their contributions stay in cache together. */
static void path_rows(const lf_forest *f, const float *rows, int64_t n_rows, void *out_) {
    double *out = out_;
    const int64_t width = (int64_t)f->n_features * f->n_outputs;
    int32_t node[LOCKSTEP];
    const int nan_routes = any_nan(rows, n_rows * f->n_features);
    for (int64_t i = 0; i < n_rows * width; i++) out[i] = 0.0;
    int64_t chunk_rows = CHUNK_BYTES / ((int64_t)sizeof(float) * f->n_features + (int64_t)sizeof(double) * width);
    if (chunk_rows < LOCKSTEP) chunk_rows = LOCKSTEP;
    for (int64_t chunk = 0; chunk < n_rows; chunk += chunk_rows) {
        const int64_t chunk_end = chunk + chunk_rows < n_rows ? chunk + chunk_rows : n_rows;
        for (int32_t tree = 0; tree < f->n_trees; tree++) {
            for (int64_t start = chunk; start < chunk_end; start += LOCKSTEP) {
                const int n = chunk_end - start < LOCKSTEP ? (int)(chunk_end - start) : LOCKSTEP;
                const float *group = rows + start * f->n_features;
                double *contribution = out + start * width;
                for (int i = 0; i < n; i++) node[i] = f->roots[tree];
                for (int level = 1, depth = f->depths[tree]; level <= depth; level++) {
                    const int moved = nan_routes ? step_path(f, group, n, node, contribution, 1)
                                                 : step_path(f, group, n, node, contribution, 0);
                    if (!moved) break; /* every row of the group sits on its leaf */
                }
            }
        }
    }
    for (int64_t i = 0; i < n_rows * width; i++) out[i] /= f->n_trees;
}

/*
 * lf_path_contributions: path contributions of `n_rows` rows, for every output.
 *   rows  float32 [n_rows * n_features], C order
 *   out   float64 [n_rows * n_features * n_outputs], written (never read)
 *   n_threads  threads to split the rows across
 */
void lf_path_contributions(const lf_forest *forest, const float *rows, int64_t n_rows, double *out, int n_threads) {
    if (n_rows <= 0) return;
    const int64_t row_bytes = (int64_t)sizeof(double) * forest->n_features * forest->n_outputs;
    run_split(path_rows, forest, rows, n_rows, out, row_bytes, n_threads);
}
