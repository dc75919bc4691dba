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
 * as impossible (breaking the missing-value route); contraction is off so that the a*b+c of Tree SHAP
 * (lf_shap_values) round the same on every machine and compiler (x86-64 baseline has no FMA, armv8 has).
 *
 * Explanations: lf_path_contributions (path contributions, in the walk that predicts) and lf_shap_values
 * (path-dependent Tree SHAP over the leaves' merged paths that explain.py builds).
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

#define LF_ABI_VERSION 4
#define LOCKSTEP 16            /* rows walked together through a tree */
#define CHUNK_BYTES (1 << 20)  /* rows (this many bytes of them) walked through every tree before the next */
#ifndef PATH_CHUNK_BYTES
#define PATH_CHUNK_BYTES CHUNK_BYTES
#endif
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

/* A walk over rows [first, first + n_rows) of `rows`, writing its share of the outputs `job` points to. */
typedef void (*row_range_fn)(const lf_forest *forest, const void *job, const float *rows, int64_t first, int64_t n_rows,
                             int thread);

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
static void predict_rows(const lf_forest *f, const void *job, const float *rows, int64_t first, int64_t n_rows,
                         int thread) {
    (void)thread;
    const int64_t n_out = f->n_outputs;
    double *out = (double *)job + first * n_out;
    rows += first * f->n_features;
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
    const void *job;
    const float *rows;
    int64_t first, n_rows;
    int thread;
} task;

static void *run_task(void *arg) {
    const task *t = arg;
    t->run(t->forest, t->job, t->rows, t->first, t->n_rows, t->thread);
    return 0;
}

/* The threads a walk of `n_rows` rows uses when `n_threads` are asked for: at least one, at most one per row. */
static int thread_count(int n_threads, int64_t n_rows) {
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if (n_threads > n_rows) n_threads = (int)n_rows;
    return n_threads < 1 ? 1 : n_threads;
}

/* Splits rows into contiguous ranges, one per thread; the calling thread takes the last range. A thread
 * that cannot be started leaves its range to the calling thread, so the answer never depends on it. */
static void run_split(row_range_fn run, const lf_forest *f, const void *job, const float *rows, int64_t n_rows,
                      int n_threads) {
    n_threads = thread_count(n_threads, n_rows);
    task tasks[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS];
    const int64_t per_thread = n_rows / n_threads, extra = n_rows % n_threads;
    int64_t first = 0;
    for (int t = 0; t < n_threads; t++) {
        const int64_t count = per_thread + (t < extra);
        tasks[t] = (task){run, f, job, rows, first, count, t};
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
    run_split(predict_rows, forest, out, rows, n_rows, n_threads);
}

/*
 * Path contributions (Saabas). Along each row's route through each tree, the change of node value at each
 * step (delta[child] = value[child] - value[parent], precomputed) is added to the row's entry for the feature
 * split on, tree by tree in order, level by level; the totals are divided by the number of trees. The mean
 * root value (the bias) plus the sum over features is the prediction, up to rounding.
 *
 * One walk predicts and explains: it also sums the leaf values as predict_rows does (the same additions in
 * the same order, so `mean` is lf_predict's to the bit). Three ways to choose the outputs explained:
 *   LF_EVERY      every output: contribution[row][feature][output];
 *   LF_GIVEN      output[row] (read) only: contribution[row][feature], one add per level;
 *   LF_PREDICTED  the prediction's argmax (written to output[row], the first of equal maxima, as numpy's
 *                 argmax): the walk adds every output into `scratch` (the thread's chunk of rows), and when a
 *                 chunk has been through every tree, copies each row's predicted output to contribution.
 * The same sums in every way: one output's figures are bit for bit the same whichever way asked for them.
 */
enum { LF_EVERY = 0, LF_GIVEN = 1, LF_PREDICTED = 2 };

typedef struct {
    const double *delta;   /* [nodes * n_outputs] value[node] - value[parent]; 0 at a root */
    int32_t way;           /* LF_EVERY, LF_GIVEN or LF_PREDICTED */
    double *mean;          /* [n_rows * n_outputs] the prediction, written; or NULL (not summed) */
    double *contribution;  /* [n_rows * n_features * (way == LF_EVERY ? n_outputs : 1)], written */
    int32_t *output;       /* [n_rows] the output explained: read (LF_GIVEN), written (LF_PREDICTED); else NULL */
    double *scratch;       /* LF_PREDICTED with n_outputs > 1: lf_path_scratch_doubles(...) doubles; else NULL */
} lf_explanation;

/* Rows of a chunk: their rows, sums and contributions of every output stay in cache together. */
static int64_t path_chunk_rows(const lf_forest *f) {
    const int64_t row_bytes = (int64_t)sizeof(float) * f->n_features +
                              (int64_t)sizeof(double) * f->n_outputs * (f->n_features + 1);
    const int64_t rows = PATH_CHUNK_BYTES / row_bytes;
    return rows < LOCKSTEP ? LOCKSTEP : rows;
}

/* A thread's scratch: its chunk of rows (or all its rows, when fewer), every output of every feature. */
static int64_t path_scratch_rows(const lf_forest *f, int64_t n_rows, int n_threads) {
    const int threads = thread_count(n_threads, n_rows);
    const int64_t most = (n_rows + threads - 1) / threads, chunk = path_chunk_rows(f);
    return most < chunk ? most : chunk;
}

/*
 * lf_path_scratch_doubles: the scratch lf_path_contributions needs for LF_PREDICTED (n_outputs > 1) with
 * these rows and threads.
 */
int64_t lf_path_scratch_doubles(const lf_forest *forest, int64_t n_rows, int n_threads) {
    if (n_rows <= 0) return 0;
    const int64_t per_thread = path_scratch_rows(forest, n_rows, n_threads) * forest->n_features * forest->n_outputs;
    return per_thread * thread_count(n_threads, n_rows);
}

/* One level for `n` rows, as `step`, adding each move's change to the row's accumulator for the feature split
 * on: acc[i * n_features * n_add + feature * n_add + k] += delta[next * n_outputs + first[i] + k], k < n_add. */
static inline int step_explain(const lf_forest *f, const double *delta, const float *rows, int n, int32_t *node,
                               double *acc, const int32_t *first, const int n_add, const int nan_routes) {
    const int64_t n_out = f->n_outputs, acc_row = (int64_t)f->n_features * n_add;
    int moved = 0;
    for (int i = 0; i < n; i++) {
        const int32_t id = node[i], feature = f->feature[id];
        const float x = rows[(int64_t)i * f->n_features + feature];
        int went_left = x <= f->threshold[id];
        if (nan_routes && x != x) went_left = f->missing_left[id];
        const int32_t next = f->children[2 * (int64_t)id + went_left];
        if (next != id) {
            double *sum = acc + i * acc_row + (int64_t)feature * n_add;
            const double *change = delta + (int64_t)next * n_out + first[i];
            for (int k = 0; k < n_add; k++) sum[k] += change[k];
            moved = 1;
        }
        node[i] = next;
    }
    return moved;
}

/* Walks `n` (<= LOCKSTEP) rows through one tree, adding n_add outputs per step (a constant where inlined). */
static inline void explain_tree(const lf_forest *f, const double *delta, int32_t tree, const float *rows, int n,
                                int32_t *node, double *acc, const int32_t *first, const int n_add,
                                const int nan_routes) {
    const int32_t root = f->roots[tree];
    for (int i = 0; i < n; i++) node[i] = root;
    for (int level = 1, depth = f->depths[tree]; level <= depth; level++) {
        if (!step_explain(f, delta, rows, n, node, acc, first, n_add, nan_routes)) break; /* all on leaves */
    }
}

typedef struct {
    const lf_explanation *explanation;
    int64_t scratch_rows; /* per thread */
} explain_job;

static void explain_rows(const lf_forest *f, const void *job_, const float *rows, int64_t first_row, int64_t n_rows,
                         int thread) {
    const explain_job *job = job_;
    const lf_explanation *e = job->explanation;
    const int64_t n_features = f->n_features, n_out = f->n_outputs;
    /* The outputs each step adds, and where it adds them: the result itself, or the chunk's scratch. */
    const int n_add = e->way == LF_GIVEN ? 1 : (int)n_out;
    const int in_scratch = e->way == LF_PREDICTED && n_out > 1;
    const int64_t out_width = n_features * (e->way == LF_EVERY ? n_out : 1), acc_width = n_features * n_add;
    rows += first_row * n_features;
    double *mean = e->mean ? e->mean + first_row * n_out : 0;
    double *contribution = e->contribution + first_row * out_width;
    int32_t *output = e->output ? e->output + first_row : 0;
    double *scratch = in_scratch ? e->scratch + thread * job->scratch_rows * acc_width : 0;
    int32_t node[LOCKSTEP], offset[LOCKSTEP] = {0};
    const int nan_routes = any_nan(rows, n_rows * n_features);
    if (mean)
        for (int64_t i = 0; i < n_rows * n_out; i++) mean[i] = 0.0;
    if (!in_scratch)
        for (int64_t i = 0; i < n_rows * out_width; i++) contribution[i] = 0.0;
    const int64_t chunk_rows = in_scratch ? job->scratch_rows : path_chunk_rows(f);
    for (int64_t chunk = 0; chunk < n_rows; chunk += chunk_rows) {
        const int64_t chunk_end = chunk + chunk_rows < n_rows ? chunk + chunk_rows : n_rows;
        double *acc_chunk = in_scratch ? scratch : contribution + chunk * acc_width;
        if (in_scratch)
            for (int64_t i = 0; i < (chunk_end - chunk) * acc_width; i++) acc_chunk[i] = 0.0;
        for (int32_t tree = 0; tree < f->n_trees; tree++) {
            for (int64_t start = chunk; start < chunk_end; start += LOCKSTEP) {
                const int n = chunk_end - start < LOCKSTEP ? (int)(chunk_end - start) : LOCKSTEP;
                const float *group = rows + start * n_features;
                double *acc = acc_chunk + (start - chunk) * acc_width;
                if (e->way == LF_GIVEN)
                    for (int i = 0; i < n; i++) offset[i] = output[start + i];
                if (n_add == 1) {
                    if (nan_routes) explain_tree(f, e->delta, tree, group, n, node, acc, offset, 1, 1);
                    else explain_tree(f, e->delta, tree, group, n, node, acc, offset, 1, 0);
                } else if (n_add == 2) {
                    if (nan_routes) explain_tree(f, e->delta, tree, group, n, node, acc, offset, 2, 1);
                    else explain_tree(f, e->delta, tree, group, n, node, acc, offset, 2, 0);
                } else {
                    if (nan_routes) explain_tree(f, e->delta, tree, group, n, node, acc, offset, n_add, 1);
                    else explain_tree(f, e->delta, tree, group, n, node, acc, offset, n_add, 0);
                }
                if (mean) {
                    for (int i = 0; i < n; i++) {
                        double *sum = mean + (start + i) * n_out;
                        const double *value = f->value + (int64_t)node[i] * n_out;
                        for (int64_t k = 0; k < n_out; k++) sum[k] += value[k];
                    }
                }
            }
        }
        /* The chunk has been through every tree: its sums are final. */
        for (int64_t row = chunk; row < chunk_end; row++) {
            if (mean)
                for (int64_t k = 0; k < n_out; k++) mean[row * n_out + k] /= f->n_trees;
            if (e->way == LF_PREDICTED) {
                int32_t best = 0;
                for (int32_t k = 1; k < n_out; k++)
                    if (mean[row * n_out + k] > mean[row * n_out + best]) best = k;
                output[row] = best;
                if (in_scratch) {
                    const double *from = acc_chunk + (row - chunk) * acc_width + best;
                    for (int64_t j = 0; j < n_features; j++) contribution[row * n_features + j] = from[j * n_out];
                }
            }
        }
    }
    for (int64_t i = 0; i < n_rows * out_width; i++) contribution[i] /= f->n_trees;
}

/*
 * lf_path_contributions: path contributions of `n_rows` rows (and their prediction, when `mean` is given).
 *   rows  float32 [n_rows * n_features], C order
 *   explanation  what to explain and where to write it (lf_explanation)
 *   n_threads  threads to split the rows across
 * Returns 0, or -1 (nothing written) when LF_PREDICTED has no `mean` or `output`, LF_GIVEN no `output`, or
 * LF_PREDICTED with several outputs no `scratch`.
 */
int lf_path_contributions(const lf_forest *forest, const float *rows, int64_t n_rows, const lf_explanation *explanation,
                          int n_threads) {
    const lf_explanation *e = explanation;
    const int scratch_needed = e->way == LF_PREDICTED && forest->n_outputs > 1;
    if ((e->way == LF_PREDICTED && (!e->mean || !e->output)) || (e->way == LF_GIVEN && !e->output) ||
        (scratch_needed && !e->scratch) || e->way < LF_EVERY || e->way > LF_PREDICTED)
        return -1;
    if (n_rows <= 0) return 0;
    const explain_job job = {e, path_scratch_rows(forest, n_rows, n_threads)};
    run_split(explain_rows, forest, &job, rows, n_rows, n_threads);
    return 0;
}

/*
 * Tree SHAP (path-dependent), leaf by leaf, as explain.py's PathBucket.shapley computes it: a leaf whose path
 * splits on m distinct features is a game of m players, and element j (a feature, the share z_j of the
 * training cover that follows the leaf's way, and o_j = 1 when the row follows it) gets, per unit of leaf value,
 *     phi_j = (o_j - z_j) * sum_k w_k * prod_i (z_i + (o_i - z_i) t_k) / (z_j + (o_j - z_j) t_k)
 * (t_k, w_k: Gauss-Legendre nodes and weights on [0, 1], exact for these polynomials). The product without
 * element j is taken as the products before and after it, so nothing is divided. Leaves with the same m come in one bucket. A row's values are summed in one order (bucket, leaf,
 * element) on one thread, so the thread count never changes them.
 */
typedef struct {
    int64_t n_leaves;
    int32_t m, q;                  /* distinct features on each leaf's path; quadrature nodes */
    const int32_t *feature;        /* [n_leaves * m] */
    const float *lower, *upper;    /* [n_leaves * m] the row follows the leaf's way when lower < x <= upper */
    const uint8_t *missing_ok;     /* [n_leaves * m] a missing value follows the leaf's way */
    const double *zero_fraction;   /* [n_leaves * m] */
    const double *leaf_value;      /* [n_leaves * n_outputs] */
    const double *nodes, *weights; /* [q] */
} lf_path_bucket;

typedef struct {
    const lf_path_bucket *buckets;
    int32_t n_buckets;
    const int32_t *output; /* [n_rows] the output explained, or NULL: every output */
    double *total;         /* [n_rows * n_features * (output ? 1 : n_outputs)] */
    double *scratch;       /* scratch_per_thread doubles for each thread */
    int64_t scratch_per_thread;
} shap_job;

static void shap_rows(const lf_forest *f, const void *job_, const float *rows, int64_t first, int64_t n_rows,
                      int thread) {
    const shap_job *job = job_;
    const int64_t n_features = f->n_features, n_out = f->n_outputs, explained = job->output ? 1 : n_out;
    double *scratch = job->scratch + thread * job->scratch_per_thread;
    for (int64_t row = first; row < first + n_rows; row++) {
        const float *x = rows + row * n_features;
        double *total = job->total + row * n_features * explained;
        for (int64_t i = 0; i < n_features * explained; i++) total[i] = 0.0;
        const int32_t output = job->output ? job->output[row] : 0;
        for (int32_t b = 0; b < job->n_buckets; b++) {
            const lf_path_bucket *p = &job->buckets[b];
            const int32_t m = p->m, q = p->q;
            double *before = scratch, *after = before + (int64_t)m * q, *slope = after + q;
            for (int64_t leaf = 0; leaf < p->n_leaves; leaf++) {
                const int64_t at = leaf * m;
                /* before[j][k]: the product of the factors of elements 0..j-1 at node k (no division) */
                for (int32_t k = 0; k < q; k++) after[k] = 1.0;
                for (int32_t j = 0; j < m; j++) {
                    const float v = x[p->feature[at + j]];
                    const int follows = v != v ? p->missing_ok[at + j] : v > p->lower[at + j] && v <= p->upper[at + j];
                    const double z = p->zero_fraction[at + j];
                    slope[j] = follows - z;
                    for (int32_t k = 0; k < q; k++) {
                        before[j * q + k] = after[k];
                        after[k] *= z + slope[j] * p->nodes[k];
                    }
                }
                for (int32_t k = 0; k < q; k++) after[k] = 1.0; /* now: the product of elements j+1..m-1 */
                const double *value = p->leaf_value + leaf * n_out;
                for (int32_t j = m - 1; j >= 0; j--) {
                    const double z = p->zero_fraction[at + j];
                    double sum = 0.0;
                    for (int32_t k = 0; k < q; k++) {
                        sum += before[j * q + k] * after[k] * p->weights[k];
                        after[k] *= z + slope[j] * p->nodes[k];
                    }
                    const double phi = slope[j] * sum;
                    double *to = total + (int64_t)p->feature[at + j] * explained;
                    if (job->output) to[0] += phi * value[output];
                    else
                        for (int64_t o = 0; o < n_out; o++) to[o] += phi * value[o];
                }
            }
        }
    }
}

/*
 * lf_shap_values: path-dependent Tree SHAP of `n_rows` rows, summed over the trees (not yet divided by them).
 *   rows     float32 [n_rows * n_features], C order
 *   buckets  the leaves' merged paths, n_buckets of them (lf_path_bucket)
 *   output   int32 [n_rows]: the output explained for each row; NULL: every output
 *   total    float64 [n_rows * n_features * (output ? 1 : n_outputs)], written
 *   scratch  float64 [n_threads * scratch_per_thread]: at least (m + 1) * q + m of the largest bucket per thread
 *   n_threads  threads to split the rows across
 * Returns 0, or -1 (nothing written) when the scratch is too small.
 */
int lf_shap_values(const lf_forest *forest, const float *rows, int64_t n_rows, const lf_path_bucket *buckets,
                   int32_t n_buckets, const int32_t *output, double *total, double *scratch,
                   int64_t scratch_per_thread, int n_threads) {
    for (int32_t b = 0; b < n_buckets; b++)
        if (((int64_t)buckets[b].m + 1) * buckets[b].q + buckets[b].m > scratch_per_thread) return -1;
    if (n_rows <= 0) return 0;
    const shap_job job = {buckets, n_buckets, output, total, scratch, scratch_per_thread};
    run_split(shap_rows, forest, &job, rows, n_rows, n_threads);
    return 0;
}
