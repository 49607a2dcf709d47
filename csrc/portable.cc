#include "portable.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "portable_internal.h"

namespace pie {
namespace detail {

long current_pid() {
#if defined(__unix__) || defined(__APPLE__)
  return static_cast<long>(getpid());
#else
  return 0;
#endif
}

Pool& Pool::instance() {
  // Never destroyed (workers may outlive static destructors). A forked child (DataLoader
  // workers) has none of the parent's threads: it gets a pool of its own.
  static std::mutex guard;
  static Pool* pool = nullptr;
  static long owner = 0;
  std::lock_guard<std::mutex> lk(guard);
  const long pid = current_pid();
  if (pool == nullptr || owner != pid) {
    pool = new Pool();
    owner = pid;
  }
  return *pool;
}

// ---- kernels --------------------------------------------------------------------------
// Rows [r, r + P) of linear_rows: register blocks of NV vectors of outputs, then of one, then
// single outputs (each the same sum whatever the block).
template <typename V, int P, int NV>
PIE_INLINE void linear_block_row(const float* x, int ldx, int in, const float* wt, int out, const float* bias,
                                 int ncols, float* y, int ldy) {
  constexpr int L = kLanes<V>;
  int j = 0;
  for (; j + L * NV <= ncols; j += L * NV) gemm_block<V, P, NV>(x, ldx, in, wt + j, out, bias + j, y + j, ldy);
  for (; j + L <= ncols; j += L) gemm_block<V, P, 1>(x, ldx, in, wt + j, out, bias + j, y + j, ldy);
  for (; j < ncols; ++j)
    for (int p = 0; p < P; ++p) {
      float acc = bias[j];
      for (int k = 0; k < in; ++k) acc = acc + x[p * ldx + k] * wt[static_cast<int64_t>(k) * out + j];
      y[p * ldy + j] = acc;
    }
}

template <typename V, int P, int NV>
PIE_INLINE void linear_blocks(const float* x, int64_t r0, int64_t r1, const Linear& L, int col0, int ncols,
                              int ldx, float* y, int ldy) {
  const float* wt = L.wt.data() + col0;
  const float* bias = L.b.data() + col0;
  int64_t r = r0;
  for (; r + P <= r1; r += P)
    linear_block_row<V, P, NV>(x + r * ldx, ldx, L.in, wt, L.out, bias, ncols, y + r * ldy, ldy);
  for (; r < r1; ++r) linear_block_row<V, 1, NV>(x + r * ldx, ldx, L.in, wt, L.out, bias, ncols, y + r * ldy, ldy);
}

// y[r][col0 + j] = b[col0 + j] + sum_k x[r][k] * wt[k][col0 + j], k in increasing order, for
// rows [r0, r1) and j in [0, ncols): register blocks of 4 rows x 32 outputs (AVX-512) or 6 x 16.
PIE_CLONES void linear_rows(const float* x, int64_t r0, int64_t r1, const Linear& L, int col0, int ncols,
                            int ldx, float* y, int ldy) {
  if (wide_blocks()) linear_blocks<v16, 4, 2>(x, r0, r1, L, col0, ncols, ldx, y, ldy);
  else linear_blocks<v8, 6, 2>(x, r0, r1, L, col0, ncols, ldx, y, ldy);
}

}  // namespace detail

using namespace detail;

namespace {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

PIE_INLINE float exp_inline(float x) {
  x = std::min(std::max(x, -87.3f), 88.f);
  const float t = x * 1.44269504088896341f;          // x / ln 2
  const float n = (t + 12582912.f) - 12582912.f;      // round to nearest (|t| < 2^22)
  const float f = (t - n) * 0.693147180559945309f;  // |f| <= ln(2) / 2
  // e^f, Taylor to degree 7 on |f| <= 0.347: error < 3e-9 before rounding
  float p = 1.98412698e-4f;
  p = p * f + 1.38888889e-3f;
  p = p * f + 8.33333333e-3f;
  p = p * f + 4.16666667e-2f;
  p = p * f + 1.66666667e-1f;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  const int32_t e = static_cast<int32_t>(n) + 127;  // 1 .. 254 after the clamp
  return p * bits_to_float(static_cast<uint32_t>(e) << 23);
}

PIE_INLINE float erf_inline(float x) {
  // Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), odd extension.
  const float a = std::fabs(x);
  const float t = 1.f / (1.f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.f - p * t * exp_inline(-a * a);
  return std::copysign(y, x);
}

PIE_CLONES void gelu_inplace(float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.f + erf_inline(x[i] * 0.70710678118654752f));
}

void linear(const float* x, int64_t n, const Linear& L, float* y, int threads) {
  parallel_rows(n, double(L.in) * L.out, threads,
                [&](int64_t b, int64_t e) { linear_rows(x, b, e, L, 0, L.out, L.in, y, L.out); });
}

void layer_norm_row(const float* x, const LayerNorm& N, float* y) {
  const int d = N.dim;
  float s = 0.f;
  for (int j = 0; j < d; ++j) s = s + x[j];
  const float mean = s / static_cast<float>(d);
  float v = 0.f;
  for (int j = 0; j < d; ++j) {
    const float c = x[j] - mean;
    v = v + c * c;
  }
  const float inv = 1.f / std::sqrt(v / static_cast<float>(d) + 1e-5f);
  for (int j = 0; j < d; ++j) y[j] = (x[j] - mean) * inv * N.g[j] + N.b[j];
}

void layer_norm(const float* x, int64_t n, const LayerNorm& N, float* y, int threads) {
  parallel_rows(n, 4.0 * N.dim, threads, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) layer_norm_row(x + r * N.dim, N, y + r * N.dim);
  });
}


// acc_r[c] = sum_j p_r[j] * v[j][c] for R rows r (p_r = p + r * ldp, acc_r = acc + r * lda) and
// C vectors V of c (v's rows ld apart), the rows sharing each load of v: partial sums over
// j mod 4 (in registers), combined as ((u0 + u1) + u2) + u3, then the last nc mod 4 terms in order.
template <typename V, int C, int R = 1>
PIE_INLINE void weighted_sum(const float* p, const float* v, int ld, int64_t nc, float* acc, int64_t ldp = 0,
                             int64_t lda = 0) {
  constexpr int L = kLanes<V>;
  V u[R][4][C] = {};
  const int64_t n4 = nc / 4 * 4;
  int64_t j = 0;
  for (; j < n4; j += 4)
    for (int q = 0; q < 4; ++q) {
      V x[C];
      for (int c = 0; c < C; ++c) x[c] = loadv<V>(v + (j + q) * ld + L * c);
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) u[r][q][c] = u[r][q][c] + p[r * ldp + j + q] * x[c];
    }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      V t = ((u[r][0][c] + u[r][1][c]) + u[r][2][c]) + u[r][3][c];
      for (int64_t k = j; k < nc; ++k) t = t + p[r * ldp + k] * loadv<V>(v + k * ld + L * c);
      storev<V>(acc + r * lda + L * c, t);
    }
}

// Softmax of s[0, nc) in place: max (exact in any order), exp, then a sum in a fixed shape:
// 16 partial sums over j mod 16, added in lane order, then the tail in order; each s[j] then
// times 1 / sum.
PIE_INLINE void softmax_row(float* s, int64_t nc) {
  int64_t j;
  const int64_t n16 = nc / 16 * 16;
  float m = -INFINITY;
  if (n16) {
    v16 mv = load16(s);
    for (j = 16; j < n16; j += 16) {
      const v16 x = load16(s + j);
      mv = mv > x ? mv : x;
    }
    for (int l = 0; l < 16; ++l) m = std::max(m, mv[l]);
  }
  for (j = n16; j < nc; ++j) m = std::max(m, s[j]);
  for (j = 0; j < nc; ++j) s[j] = exp_inline(s[j] - m);
  v16 sv = {};
  for (j = 0; j < n16; j += 16) sv = sv + load16(s + j);
  float sum = 0.f;
  for (int l = 0; l < 16; ++l) sum = sum + sv[l];
  for (j = n16; j < nc; ++j) sum = sum + s[j];
  const float inv = 1.f / sum;
  for (j = 0; j < nc; ++j) s[j] = s[j] * inv;
}

// out = sum_j p_j v_j for one head's values vhh [nc][hd] (see weighted_sum).
PIE_INLINE void head_output(const float* p, const float* vhh, int64_t nc, int hd, bool wide, float* acc) {
  switch (hd % 16 ? 0 : wide ? hd : 8) {  // AVX2: 16 values of c at a time (8 registers)
    case 8:
      for (int c0 = 0; c0 < hd; c0 += 16) weighted_sum<v8, 2>(p, vhh + c0, hd, nc, acc + c0);
      break;
    case 16: weighted_sum<v16, 1>(p, vhh, hd, nc, acc); break;
    case 32: weighted_sum<v16, 2>(p, vhh, hd, nc, acc); break;
    case 48: weighted_sum<v16, 3>(p, vhh, hd, nc, acc); break;
    case 64: weighted_sum<v16, 4>(p, vhh, hd, nc, acc); break;
    default:
      for (int c = 0; c < hd; ++c) {
        float t[4] = {0.f, 0.f, 0.f, 0.f};
        const int64_t n4 = nc / 4 * 4;
        int64_t j;
        for (j = 0; j < n4; j += 4)
          for (int u = 0; u < 4; ++u) t[u] = t[u] + p[j + u] * vhh[(j + u) * hd + c];
        float tot = ((t[0] + t[1]) + t[2]) + t[3];
        for (; j < nc; ++j) tot = tot + p[j] * vhh[j * hd + c];
        acc[c] = tot;
      }
  }
}

constexpr int kScoreRows = 6;  // the most rows of a score block: the scratch holds this many

// Attention of query rows [b, e) (see attention), one head at a time, so that the head's keys
// and values stay in cache for every row. The scores of P rows at once are the linear layers'
// register blocks: s[r][j] = (0 + sum_c q[r][c] * kh[c][j], c in order) * scale (kt: keys
// transposed [d][nc]; zero: nc zeros as the bias); vh: values per head [heads][nc][hd];
// s, acc: scratch of P * nc and hd floats.
template <typename V, int P, int NV>
PIE_INLINE void attention_rows_in(const float* q, int64_t b, int64_t e, const float* kt, const float* vh,
                                  const float* zero, int64_t nc, int d, int heads, float* a, float* __restrict s,
                                  float* __restrict acc, bool wide) {
  static_assert(P <= kScoreRows, "the scratch s holds kScoreRows rows of scores");
  const int hd = d / heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  const int ldk = static_cast<int>(nc);
  for (int h = 0; h < heads; ++h) {
    const float* kh = kt + static_cast<int64_t>(h * hd) * nc;
    const float* vhh = vh + static_cast<int64_t>(h) * nc * hd;
    for (int64_t i = b; i < e; i += P) {
      const int rows = static_cast<int>(std::min<int64_t>(P, e - i));
      const float* qi = q + i * d + h * hd;
      if (rows == P) linear_block_row<V, P, NV>(qi, d, hd, kh, ldk, zero, ldk, s, ldk);
      else
        for (int r = 0; r < rows; ++r)
          linear_block_row<V, 1, NV>(qi + r * d, d, hd, kh, ldk, zero, ldk, s + r * nc, ldk);
      for (int r = 0; r < rows; ++r) {
        float* sr = s + r * nc;
        for (int64_t j = 0; j < nc; ++j) sr[j] = sr[j] * scale;
        softmax_row(sr, nc);
      }
      int r = 0;
      if (wide && hd == 32)  // two rows share each load of the values (16 + 2 registers)
        for (; r + 2 <= rows; r += 2) weighted_sum<v16, 2, 2>(s + r * nc, vhh, hd, nc, a + (i + r) * d + h * hd, nc, d);
      for (; r < rows; ++r) {
        head_output(s + r * nc, vhh, nc, hd, wide, acc);
        for (int c = 0; c < hd; ++c) a[(i + r) * d + h * hd + c] = acc[c];
      }
    }
  }
}

PIE_CLONES void attention_rows(const float* q, int64_t b, int64_t e, const float* kt, const float* vh,
                               const float* zero, int64_t nc, int d, int heads, float* a, float* __restrict s,
                               float* __restrict acc) {
  if (wide_blocks()) attention_rows_in<v16, 4, 2>(q, b, e, kt, vh, zero, nc, d, heads, a, s, acc, true);
  else attention_rows_in<v8, kScoreRows, 2>(q, b, e, kt, vh, zero, nc, d, heads, a, s, acc, false);
}

// Multi-head attention: a [n][d] = softmax(q k^T / sqrt(hd)) v per head; q [n][d],
// kv [nc][2d] (keys then values, heads contiguous as torch's view(.., 2, heads, hd)).
void attention(const float* q, int64_t n, const float* kv, int64_t nc, int d, int heads, float* a,
               int threads) {
  const int hd = d / heads;
  std::vector<float> kt(static_cast<size_t>(d) * nc), vh(static_cast<size_t>(d) * nc);
  for (int64_t j = 0; j < nc; ++j)
    for (int c = 0; c < d; ++c) {
      kt[static_cast<size_t>(c) * nc + j] = kv[j * 2 * d + c];  // [heads][hd][nc]
      vh[(static_cast<size_t>(c / hd) * nc + j) * hd + c % hd] = kv[j * 2 * d + d + c];  // [heads][nc][hd]
    }
  const std::vector<float> zero(nc, 0.f);
  parallel_rows(n, 4.0 * nc * d, threads, [&](int64_t b, int64_t e) {
    std::vector<float> s(static_cast<size_t>(kScoreRows) * nc), acc(d);
    attention_rows(q, b, e, kt.data(), vh.data(), zero.data(), nc, d, heads, a, s.data(), acc.data());
  });
}

// One pre-norm transformer block on x [n][d] in place; ctx [nc][d] (cross-attention) or
// nullptr (self-attention over norm1(x)).
void block_forward(const Block& B, float* x, int64_t n, const float* ctx, int64_t nc, int d, int heads,
                   int threads) {
  std::vector<float> h(static_cast<size_t>(n) * d), qv(static_cast<size_t>(n) * d),
      a(static_cast<size_t>(n) * d);
  layer_norm(x, n, B.norm1, h.data(), threads);
  linear(h.data(), n, B.q, qv.data(), threads);
  const float* c = ctx ? ctx : h.data();
  const int64_t m = ctx ? nc : n;
  std::vector<float> kv(static_cast<size_t>(m) * 2 * d);
  linear(c, m, B.kv, kv.data(), threads);
  attention(qv.data(), n, kv.data(), m, d, heads, a.data(), threads);
  linear(a.data(), n, B.proj, qv.data(), threads);
  for (int64_t i = 0; i < n * d; ++i) x[i] = x[i] + qv[i];
  layer_norm(x, n, B.norm2, h.data(), threads);
  std::vector<float> mid(static_cast<size_t>(n) * B.fc1.out);
  linear(h.data(), n, B.fc1, mid.data(), threads);
  parallel_rows(n, 30.0 * B.fc1.out, threads, [&](int64_t b, int64_t e) {
    gelu_inplace(mid.data() + b * B.fc1.out, (e - b) * B.fc1.out);
  });
  linear(mid.data(), n, B.fc2, qv.data(), threads);
  for (int64_t i = 0; i < n * d; ++i) x[i] = x[i] + qv[i];
}

// The 2-D sinusoidal position encoding of codec.models.mim.position_encoding: row p of the
// grid (y = p / w + oy, x = p % w + ox) into pe[dim].
void position_row(int64_t p, int w, int oy, int ox, const std::vector<float>& freq, int dim, float* pe) {
  const int q = static_cast<int>(freq.size());
  const float y = static_cast<float>(p / w + oy), x = static_cast<float>(p % w + ox);
  for (int i = 0; i < q; ++i) {
    const double ay = static_cast<double>(y * freq[i]), ax = static_cast<double>(x * freq[i]);
    pe[i] = static_cast<float>(sin_d(ay));
    pe[q + i] = static_cast<float>(cos_d(ay));
    pe[2 * q + i] = static_cast<float>(sin_d(ax));
    pe[3 * q + i] = static_cast<float>(cos_d(ax));
  }
  for (int i = 4 * q; i < dim; ++i) pe[i] = 0.f;
}

std::vector<float> frequencies(int dim) {
  const int q = dim / 4;
  std::vector<float> f(q);
  // torch: exp(-log(10000) * arange(q) / q) in float32
  const float c = -9.21034037197618f;  // -log(10000)
  for (int i = 0; i < q; ++i) f[i] = exp_f(c * static_cast<float>(i) / static_cast<float>(q));
  return f;
}

Linear make_linear(const std::vector<float>& w, const std::vector<float>& b, int out, int in) {
  Linear L;
  L.in = in;
  L.out = out;
  L.wt.resize(static_cast<size_t>(in) * out);
  for (int o = 0; o < out; ++o)
    for (int i = 0; i < in; ++i) L.wt[static_cast<size_t>(i) * out + o] = w[static_cast<size_t>(o) * in + i];
  L.b = b;
  return L;
}

LayerNorm make_norm(const Params& P, const std::string& name, int d) {
  LayerNorm N;
  N.dim = d;
  N.g = P.get(name + ".weight");
  N.b = P.get(name + ".bias");
  return N;
}

void declare_block(Params& P, const std::string& p, int d, int hidden) {
  for (const char* n : {".norm1", ".norm2"}) {
    P.declare(p + n + ".weight", {d});
    P.declare(p + n + ".bias", {d});
  }
  P.declare(p + ".q.weight", {d, d});
  P.declare(p + ".q.bias", {d});
  P.declare(p + ".kv.weight", {2 * d, d});
  P.declare(p + ".kv.bias", {2 * d});
  P.declare(p + ".proj.weight", {d, d});
  P.declare(p + ".proj.bias", {d});
  P.declare(p + ".mlp.0.weight", {hidden, d});
  P.declare(p + ".mlp.0.bias", {hidden});
  P.declare(p + ".mlp.2.weight", {d, hidden});
  P.declare(p + ".mlp.2.bias", {d});
}

Block make_block(const Params& P, const std::string& p, int d, int hidden) {
  Block B;
  B.norm1 = make_norm(P, p + ".norm1", d);
  B.norm2 = make_norm(P, p + ".norm2", d);
  B.q = make_linear(P.get(p + ".q.weight"), P.get(p + ".q.bias"), d, d);
  B.kv = make_linear(P.get(p + ".kv.weight"), P.get(p + ".kv.bias"), 2 * d, d);
  B.proj = make_linear(P.get(p + ".proj.weight"), P.get(p + ".proj.bias"), d, d);
  B.fc1 = make_linear(P.get(p + ".mlp.0.weight"), P.get(p + ".mlp.0.bias"), hidden, d);
  B.fc2 = make_linear(P.get(p + ".mlp.2.weight"), P.get(p + ".mlp.2.bias"), d, hidden);
  return B;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

// ---- math -------------------------------------------------------------------------------
float exp_f(float x) { return exp_inline(x); }
float erf_f(float x) { return erf_inline(x); }

namespace {
// sin and cos of r, |r| <= pi/4: Taylor series to degree 17 and 18 (error < 1e-18).
double sin_kernel(double r) {
  const double r2 = r * r;
  double p = 1.0 / 355687428096000.0;  // 1/17!
  p = p * r2 - 1.0 / 1307674368000.0;  // 1/15!
  p = p * r2 + 1.0 / 6227020800.0;     // 1/13!
  p = p * r2 - 1.0 / 39916800.0;       // 1/11!
  p = p * r2 + 1.0 / 362880.0;         // 1/9!
  p = p * r2 - 1.0 / 5040.0;           // 1/7!
  p = p * r2 + 1.0 / 120.0;            // 1/5!
  p = p * r2 - 1.0 / 6.0;              // 1/3!
  return r + r * r2 * p;
}
double cos_kernel(double r) {
  const double r2 = r * r;
  double p = -1.0 / 6402373705728000.0;  // 1/18!
  p = p * r2 + 1.0 / 20922789888000.0;   // 1/16!
  p = p * r2 - 1.0 / 87178291200.0;      // 1/14!
  p = p * r2 + 1.0 / 479001600.0;        // 1/12!
  p = p * r2 - 1.0 / 3628800.0;          // 1/10!
  p = p * r2 + 1.0 / 40320.0;            // 1/8!
  p = p * r2 - 1.0 / 720.0;              // 1/6!
  p = p * r2 + 1.0 / 24.0;               // 1/4!
  p = p * r2 - 0.5;
  return 1.0 + r2 * p;
}
// x = k pi/2 + r, |r| <= pi/4 (Cody-Waite, pi/2 in three 33-bit parts as fdlibm: exact
// products for |k| < 2^20)
double reduce(double x, int64_t* k) {
  const double kd = std::nearbyint(x * 0.636619772367581382);
  *k = static_cast<int64_t>(kd);
  return ((x - kd * 1.57079632673412561417) - kd * 6.07710050630396597660e-11) -
         kd * 2.02226624871116645580e-21;
}
}  // namespace

double sin_d(double x) {
  int64_t k;
  const double r = reduce(x, &k);
  switch (k & 3) {
    case 0: return sin_kernel(r);
    case 1: return cos_kernel(r);
    case 2: return -sin_kernel(r);
    default: return -cos_kernel(r);
  }
}

double cos_d(double x) {
  int64_t k;
  const double r = reduce(x, &k);
  switch (k & 3) {
    case 0: return cos_kernel(r);
    case 1: return -sin_kernel(r);
    case 2: return -cos_kernel(r);
    default: return sin_kernel(r);
  }
}

// ---- parameters ---------------------------------------------------------------------------
void Params::declare(const std::string& name, std::vector<int64_t> shape) {
  entries_[name].shape = std::move(shape);
}

Params::Entry& Params::checked(const std::string& name, const std::vector<int64_t>& shape) {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw std::invalid_argument("unknown parameter " + name);
  if (it->second.shape != shape)
    throw std::invalid_argument("parameter " + name + " has shape " + shape_str(shape) + ", expected " +
                                shape_str(it->second.shape));
  return it->second;
}

void Params::set(const std::string& name, const float* data, const std::vector<int64_t>& shape) {
  Entry& e = checked(name, shape);
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  e.data.assign(data, data + n);
  e.set = true;
}

namespace {

// binary16 -> binary32, exact (every half value is a float value). Branch-free, so the loop
// vectorises; a subnormal half (man * 2^-24) is a normal float, computed exactly whatever
// the floating-point mode (no denormal is read or made, and no rounding happens).
inline float widen_half(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  const float tiny = static_cast<float>(static_cast<int32_t>(man)) * 0x1p-24f;
  uint32_t tiny_bits;
  std::memcpy(&tiny_bits, &tiny, sizeof tiny_bits);
  const uint32_t bits = exp == 0x1fu ? (sign | 0x7f800000u | (man << 13))   // infinity, NaN
                        : exp != 0   ? (sign | ((exp + 112) << 23) | (man << 13))  // rebias 15 -> 127
                                     : (sign | tiny_bits);                    // zero, subnormal
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

void Params::set_half(const std::string& name, const uint16_t* bits, const std::vector<int64_t>& shape) {
  Entry& e = checked(name, shape);
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  e.data.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) e.data[static_cast<size_t>(i)] = widen_half(bits[i]);
  e.set = true;
}

void Params::check_complete() const {
  for (const auto& [name, e] : entries_)
    if (!e.set) throw std::invalid_argument("parameter " + name + " was not given");
}

const std::vector<float>& Params::get(const std::string& name) const { return entries_.at(name).data; }

void Params::release(const std::string& name) {
  Entry& e = entries_.at(name);
  std::vector<float>().swap(e.data);
  e.set = false;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Params::shapes() const {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& [name, e] : entries_) out.emplace_back(name, e.shape);
  return out;
}

// ---- the masked transformer ------------------------------------------------------------------
MaskedTransformer::MaskedTransformer(int M_, int K_, int dim_, int depth, int decoder_depth, int heads_,
                                     int mlp_ratio_)
    : M(M_), K(K_), dim(dim_), heads(heads_), mlp_ratio(mlp_ratio_), depth_(depth),
      decoder_depth_(decoder_depth) {
  if (M < 1 || K < 2 || dim < 4 || heads < 1 || dim % heads || depth < 0 || decoder_depth < 1)
    throw std::invalid_argument("invalid transformer sizes");
  const int d = dim, hidden = mlp_ratio * dim;
  params_.declare("embed.weight", {int64_t{M} * K, d});
  params_.declare("context_token", {1, 1, d});
  params_.declare("mask_token", {1, 1, d});
  for (int i = 0; i < depth; ++i) declare_block(params_, "encoder." + std::to_string(i), d, hidden);
  for (int i = 0; i < decoder_depth; ++i) declare_block(params_, "decoder." + std::to_string(i), d, hidden);
  for (const char* n : {"encoder_norm", "norm"}) {
    params_.declare(std::string(n) + ".weight", {d});
    params_.declare(std::string(n) + ".bias", {d});
  }
  params_.declare("head.weight", {int64_t{M} * K, d});
  params_.declare("head.bias", {int64_t{M} * K});
}

void MaskedTransformer::finalize() {
  params_.check_complete();
  const int d = dim, hidden = mlp_ratio * dim;
  embed_ = params_.get("embed.weight");
  context_token_ = params_.get("context_token");
  mask_token_ = params_.get("mask_token");
  encoder_.clear();
  decoder_.clear();
  for (int i = 0; i < depth_; ++i) encoder_.push_back(make_block(params_, "encoder." + std::to_string(i), d, hidden));
  for (int i = 0; i < decoder_depth_; ++i)
    decoder_.push_back(make_block(params_, "decoder." + std::to_string(i), d, hidden));
  encoder_norm_ = make_norm(params_, "encoder_norm", d);
  norm_ = make_norm(params_, "norm", d);
  head_ = make_linear(params_.get("head.weight"), params_.get("head.bias"), M * K, d);
  ready_ = true;
}

void MaskedTransformer::forward(const int32_t* tokens, int h, int w, const int64_t* known, int64_t nk,
                                const int64_t* query, int64_t nq, int oy, int ox, float* out,
                                int threads) const {
  if (!ready_) throw std::logic_error("MaskedTransformer: finalize() before forward()");
  const int64_t hw = int64_t{h} * w;
  for (int64_t i = 0; i < nk; ++i)
    if (known[i] < 0 || known[i] >= hw) throw std::invalid_argument("known position out of range");
  for (int64_t i = 0; i < nq; ++i)
    if (query[i] < 0 || query[i] >= hw) throw std::invalid_argument("query position out of range");
  for (int64_t i = 0; i < int64_t{M} * hw; ++i)
    if (tokens[i] < 0 || tokens[i] >= K) throw std::invalid_argument("token out of range");
  FlushDenormals flush;
  const int d = dim;
  const std::vector<float> freq = frequencies(d);
  // encoder input: the context token, then each known position's embeddings + its encoding
  std::vector<float> x(static_cast<size_t>(nk + 1) * d);
  std::copy(context_token_.begin(), context_token_.end(), x.begin());
  parallel_rows(nk, 20.0 * d * M, threads, [&](int64_t b, int64_t e) {
    std::vector<float> pe(d);
    for (int64_t i = b; i < e; ++i) {
      float* xi = x.data() + (i + 1) * d;
      std::fill(xi, xi + d, 0.f);
      for (int m = 0; m < M; ++m) {
        const int64_t t = tokens[m * hw + known[i]];
        const float* emb = embed_.data() + (int64_t{m} * K + t) * d;
        for (int c = 0; c < d; ++c) xi[c] = xi[c] + emb[c];
      }
      position_row(known[i], w, oy, ox, freq, d, pe.data());
      for (int c = 0; c < d; ++c) xi[c] = xi[c] + pe[c];
    }
  });
  for (const Block& B : encoder_) block_forward(B, x.data(), nk + 1, nullptr, 0, d, heads, threads);
  std::vector<float> ctx(x.size());
  layer_norm(x.data(), nk + 1, encoder_norm_, ctx.data(), threads);
  // queries: the mask token + their encodings, through the cross-attention blocks
  std::vector<float> q(static_cast<size_t>(nq) * d);
  parallel_rows(nq, 20.0 * d, threads, [&](int64_t b, int64_t e) {
    std::vector<float> pe(d);
    for (int64_t i = b; i < e; ++i) {
      position_row(query[i], w, oy, ox, freq, d, pe.data());
      for (int c = 0; c < d; ++c) q[i * d + c] = mask_token_[c] + pe[c];
    }
  });
  for (const Block& B : decoder_) block_forward(B, q.data(), nq, ctx.data(), nk + 1, d, heads, threads);
  std::vector<float> qn(q.size());
  layer_norm(q.data(), nq, norm_, qn.data(), threads);
  linear(qn.data(), nq, head_, out, threads);
}

// ---- the channel-conditional conv model -------------------------------------------------------
ChannelConv::ChannelConv(int M_, int K_, int channels_, int depth, std::vector<int> groups)
    : M(M_), K(K_), channels(channels_), depth_(depth) {
  if (M < 1 || K < 2 || channels < 1 || depth < 0 || groups.empty())
    throw std::invalid_argument("invalid channel model sizes");
  bounds.push_back(0);
  for (int g : groups) {
    if (g < 1) throw std::invalid_argument("group sizes must be positive");
    bounds.push_back(bounds.back() + g);
  }
  if (bounds.back() != M) throw std::invalid_argument("group sizes must sum to M");
  const int c = channels;
  params_.declare("embed.weight", {int64_t{M} * K, c});
  params_.declare("group_embed.weight", {static_cast<int64_t>(groups.size()), c});
  for (int i = 0; i < depth; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    params_.declare(p + ".1.weight", {c, c, 3, 3});
    params_.declare(p + ".1.bias", {c});
    params_.declare(p + ".3.weight", {c, c, 1, 1});
    params_.declare(p + ".3.bias", {c});
  }
  params_.declare("head.weight", {int64_t{M} * K, c, 1, 1});
  params_.declare("head.bias", {int64_t{M} * K});
}

void ChannelConv::finalize() {
  params_.check_complete();
  const int c = channels;
  embed_ = params_.get("embed.weight");
  group_embed_ = params_.get("group_embed.weight");
  conv3_.clear();
  conv1_.clear();
  for (int i = 0; i < depth_; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    // [c_out][c_in][ky][kx] -> rows of the im2col vector ordered (ky, kx, c_in)
    const std::vector<float>& w3 = params_.get(p + ".1.weight");
    std::vector<float> w(static_cast<size_t>(c) * 9 * c);
    for (int o = 0; o < c; ++o)
      for (int ci = 0; ci < c; ++ci)
        for (int k = 0; k < 9; ++k)
          w[static_cast<size_t>(o) * 9 * c + static_cast<size_t>(k) * c + ci] =
              w3[(static_cast<size_t>(o) * c + ci) * 9 + k];
    conv3_.push_back(make_linear(w, params_.get(p + ".1.bias"), c, 9 * c));
    conv1_.push_back(make_linear(params_.get(p + ".3.weight"), params_.get(p + ".3.bias"), c, c));
  }
  head_ = make_linear(params_.get("head.weight"), params_.get("head.bias"), M * K, c);
  ready_ = true;
}

void ChannelConv::forward(const int32_t* tokens, int rows, int h, int w, int g, float* out,
                          int threads) const {
  if (!ready_) throw std::logic_error("ChannelConv: finalize() before forward()");
  const int G = static_cast<int>(bounds.size()) - 1;
  if (g < 1 || g >= G) throw std::invalid_argument("group must be in 1..G-1");
  const int lo = bounds[g], hi = bounds[g + 1];
  if (rows < lo) throw std::invalid_argument("tokens hold fewer sub-vectors than the group needs");
  const int64_t hw = int64_t{h} * w;
  for (int64_t i = 0; i < int64_t{lo} * hw; ++i)
    if (tokens[i] < 0 || tokens[i] >= K) throw std::invalid_argument("token out of range");
  FlushDenormals flush;
  const int c = channels;
  std::vector<float> x(static_cast<size_t>(hw) * c), u(x.size()), v(x.size());
  parallel_rows(hw, 2.0 * lo * c, threads, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      float* xp = x.data() + p * c;
      std::fill(xp, xp + c, 0.f);
      for (int m = 0; m < lo; ++m) {
        const float* emb = embed_.data() + (int64_t{m} * K + tokens[m * hw + p]) * c;
        for (int j = 0; j < c; ++j) xp[j] = xp[j] + emb[j];
      }
      const float* ge = group_embed_.data() + int64_t{g} * c;
      for (int j = 0; j < c; ++j) xp[j] = xp[j] / static_cast<float>(lo) + ge[j];
    }
  });
  for (int i = 0; i < depth_; ++i) {
    std::copy(x.begin(), x.end(), u.begin());
    gelu_inplace(u.data(), static_cast<int64_t>(u.size()));
    // 3x3 convolution, zero padding: each output position gathers its 9 neighbours
    const Linear& L3 = conv3_[i];
    parallel_rows(hw, 9.0 * c * c, threads, [&](int64_t b, int64_t e) {
      constexpr int64_t kRows = 8;  // im2col of 8 positions, then 4 rows at a time
      std::vector<float> col(static_cast<size_t>(kRows) * 9 * c);
      for (int64_t p0 = b; p0 < e; p0 += kRows) {
        const int64_t n = std::min(kRows, e - p0);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t p = p0 + r, py = p / w, px = p % w;
          for (int k = 0; k < 9; ++k) {
            const int64_t yy = py + k / 3 - 1, xx = px + k % 3 - 1;
            float* dst = col.data() + (r * 9 + k) * c;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) std::fill(dst, dst + c, 0.f);
            else std::copy(u.data() + (yy * w + xx) * c, u.data() + (yy * w + xx + 1) * c, dst);
          }
        }
        linear_rows(col.data(), 0, n, L3, 0, c, 9 * c, v.data() + p0 * c, c);
        gelu_inplace(v.data() + p0 * c, n * c);
      }
    });
    linear(v.data(), hw, conv1_[i], u.data(), threads);
    for (size_t k = 0; k < x.size(); ++k) x[k] = x[k] + u[k];
  }
  std::copy(x.begin(), x.end(), u.begin());
  gelu_inplace(u.data(), static_cast<int64_t>(u.size()));
  const int ncols = (hi - lo) * K;
  parallel_rows(hw, double(c) * ncols, threads, [&](int64_t b, int64_t e) {
    linear_rows(u.data(), b, e, head_, lo * K, ncols, c, out, ncols);
  });
}

}  // namespace pie
