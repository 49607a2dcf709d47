#include "portable_decoder.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "portable_internal.h"

namespace pie {
using namespace detail;

namespace {

constexpr float kSlope = 0.2f;  // every LeakyReLU of the decoder

// torch's leaky_relu: x > 0 ? x : x * slope (so -0 and NaN pass as torch passes them)
PIE_INLINE float leaky(float x) { return x > 0.f ? x : x * kSlope; }
PIE_INLINE v16 leaky(v16 x) {
  const v16 zero = {};
  return x > zero ? x : x * kSlope;
}
template <class V = v16>
PIE_INLINE V splat(float b) {
  V v;
  for (int l = 0; l < kLanes<V>; ++l) v[l] = b;
  return v;
}

template <class V>
PIE_INLINE V load_as(const float* p);
template <>
PIE_INLINE float load_as<float>(const float* p) {
  return *p;
}
template <>
PIE_INLINE v16 load_as<v16>(const float* p) {
  return load16(p);
}
PIE_INLINE void store_as(float* p, float v) { *p = v; }
PIE_INLINE void store_as(float* p, v16 v) { store16(p, v); }

// Zero-initialised float storage (calloc: pages never written cost nothing).
class Buffer {
 public:
  explicit Buffer(size_t n) : p_(static_cast<float*>(std::calloc(n ? n : 1, sizeof(float)))) {
    if (!p_) throw std::bad_alloc();
  }
  ~Buffer() { std::free(p_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* get() const { return p_; }

 private:
  float* p_;
};

// ---- Winograd F(4x4, 3x3) ---------------------------------------------------------------
// Output tiles of kM x kM pixels from input patches of kA x kA (Lavin & Gray 2016, points 0,
// +-1, +-2, infinity): y = A^T ((G g G^T) * (B^T d B)) A, a cross-correlation as torch's, with
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
// Each 1-D transform below is evaluated exactly as written (fixed order, no contraction).
constexpr int kM = 4, kA = kM + 2, kXi = kA * kA;

// t = B^T d
template <class V>
PIE_INLINE void input_1d(const V* d, V* t) {
  const V p = d[4] - d[2] * 4.f, q = d[3] - d[1] * 4.f, r = d[4] - d[2], s = (d[3] - d[1]) * 2.f;
  t[0] = (d[0] * 4.f - d[2] * 5.f) + d[4];
  t[1] = p + q;
  t[2] = p - q;
  t[3] = r + s;
  t[4] = r - s;
  t[5] = (d[1] * 4.f - d[3] * 5.f) + d[5];
}

// y = A^T m
PIE_INLINE void output_1d(const v16* m, v16* y) {
  const v16 a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
  y[0] = (m[0] + a) + c;
  y[1] = b + d * 2.f;
  y[2] = a + c * 4.f;
  y[3] = (b + d * 8.f) + m[5];
}

// Activations [row][column][channel] with a zero border: padded row r, column x hold pixel
// (r - 1, x - 1); the padded size rounds h and w up to whole tiles, plus 2.
struct Act {
  Act(int h_, int w_, int c_)
      : h(h_), w(w_), c(c_), wp(kM * ((w_ + kM - 1) / kM) + 2),
        buf(static_cast<size_t>(kM * ((h_ + kM - 1) / kM) + 2) * wp * c_) {}
  float* at(int64_t r, int64_t x) const { return buf.get() + (r * wp + x) * c; }
  int h, w, c;
  int64_t wp;
  Buffer buf;
};

// Rows [row0, row0 + rows) of the last convolution's input (an h x w image), channels-last:
// [row][column][channel]; column x + 1 holds pixel x (zero border), columns padded so that
// 32-pixel blocks may read past the image. Rows outside the image must read as zero.
struct Band {
  Band(int rows_, int h_, int w_, int c_)
      : rows(rows_), h(h_), w(w_), c(c_), wp((w_ + 31) / 32 * 32 + 2), buf(static_cast<size_t>(rows_) * wp * c_) {}
  float* at(int64_t r, int64_t x) const { return buf.get() + ((r - row0) * wp + x) * c; }
  int rows, h, w, c;
  int64_t wp, row0 = 0;
  Buffer buf;
};

enum class Epilogue {
  kStore,        // y -> act
  kLeaky,        // leaky(y) -> act
  kResidual,     // act + y -> act (in place)
  kShuffle,      // PixelShuffle(2)(y) -> act (2h x 2w)
  kShuffleLast,  // leaky(PixelShuffle(2)(y)) -> band (2h x 2w)
};

struct Target {
  Epilogue mode;
  Act* act = nullptr;
  Band* band = nullptr;
  int next = 0;  // channels after the shuffle
};

// v[xi] = (B^T d B)[xi] for one kA x kA patch, xi = kA * row + column; d0: its top-left
// element, rs, cs: the strides of its rows and columns; vs: the stride of v between positions.
template <class V, bool kLeakyIn>
PIE_INLINE void input_patch(const float* d0, int64_t rs, int64_t cs, float* v, int64_t vs) {
  V d[kA][kA], t[kA][kA];
  for (int r = 0; r < kA; ++r)
    for (int q = 0; q < kA; ++q) {
      const V x = load_as<V>(d0 + r * rs + q * cs);
      d[q][r] = kLeakyIn ? leaky(x) : x;  // d[column][row]
    }
  for (int q = 0; q < kA; ++q) input_1d(d[q], t[q]);  // t[column][.] = B^T d[column]
  for (int r = 0; r < kA; ++r) {
    V row[kA], out[kA];
    for (int q = 0; q < kA; ++q) row[q] = t[q][r];
    input_1d(row, out);
    for (int q = 0; q < kA; ++q) store_as(v + (kA * r + q) * vs, out[q]);
  }
}

template <bool kLeakyIn>
PIE_INLINE void input_tiles(const Act& in, int64_t t0, int nt, int ntx, int T, float* V) {
  const int c = in.c;
  const int64_t rs = in.wp * c, vs = int64_t{T} * c;
  for (int t = 0; t < nt; ++t) {
    const int64_t ty = (t0 + t) / ntx, tx = (t0 + t) % ntx;
    const float* d0 = in.at(kM * ty, kM * tx);
    float* v = V + int64_t{t} * c;
    int ci = 0;
    for (; ci + 16 <= c; ci += 16) input_patch<v16, kLeakyIn>(d0 + ci, rs, c, v + ci, vs);
    for (; ci < c; ++ci) input_patch<float, kLeakyIn>(d0 + ci, rs, c, v + ci, vs);
  }
}

// V [kXi][T][cin] of the tiles t0 + t, t < nt (row-major over rows of ntx tiles).
PIE_CLONES void input_transform(const Act& in, int64_t t0, int nt, int ntx, int T, bool leaky_in, float* V) {
  if (leaky_in) input_tiles<true>(in, t0, nt, ntx, T, V);
  else input_tiles<false>(in, t0, nt, ntx, T, V);
}

template <typename Vec, int P, int NV>
PIE_INLINE void tile_products(const float* V, const WinogradConv& C, int rows, int T, float* M) {
  const int K = C.cin;
  const int64_t ld = C.cpad;
  for (int xi = 0; xi < kXi; ++xi) {
    const float* vx = V + int64_t{xi} * T * K;
    const float* ux = C.u.get() + int64_t{xi} * K * ld;
    float* mx = M + int64_t{xi} * T * ld;
    for (int64_t j = 0; j < ld; j += kLanes<Vec> * NV)
      for (int t = 0; t < rows; t += P)
        gemm_block<Vec, P, NV>(vx + int64_t{t} * K, K, K, ux + j, ld, nullptr, mx + t * ld + j, ld);
  }
}

// M [kXi][T][cpad] = V [kXi][T][cin] x u [kXi][cin][cpad] for the first ``rows`` tiles
// (a multiple of the block's rows; rows past the chunk's tiles are computed and ignored).
PIE_CLONES void winograd_products(const float* V, const WinogradConv& C, int rows, int T, float* M, bool wide) {
  if (wide) tile_products<v16, 8, 2>(V, C, rows, T, M);
  else tile_products<v8, 6, 2>(V, C, rows, T, M);
}

// Pixel (py, px), outputs [j, j + lanes) of the convolution: y -> the target.
PIE_INLINE void write_outputs(const Target& T, v16 y, int py, int px, int j, int lanes) {
  switch (T.mode) {
    case Epilogue::kStore:
    case Epilogue::kLeaky: {
      if (T.mode == Epilogue::kLeaky) y = leaky(y);
      float* p = T.act->at(py + 1, px + 1) + j;
      if (lanes == 16) store16(p, y);
      else for (int l = 0; l < lanes; ++l) p[l] = y[l];
      break;
    }
    case Epilogue::kResidual: {
      float* p = T.act->at(py + 1, px + 1) + j;
      if (lanes == 16) store16(p, load16(p) + y);
      else for (int l = 0; l < lanes; ++l) p[l] = p[l] + y[l];
      break;
    }
    case Epilogue::kShuffle: {
      const int n = T.next;
      if (n % 16 == 0) {  // 16 consecutive channels of one pixel of the next stage
        const int q = j / n;
        store16(T.act->at(2 * py + (q >> 1) + 1, 2 * px + (q & 1) + 1) + j % n, y);
      } else {
        for (int l = 0; l < lanes; ++l) {
          const int o = j + l, q = o / n;
          T.act->at(2 * py + (q >> 1) + 1, 2 * px + (q & 1) + 1)[o % n] = y[l];
        }
      }
      break;
    }
    case Epilogue::kShuffleLast: {
      y = leaky(y);
      const int n = T.next;
      if (n % 16 == 0) {
        const int q = j / n;
        store16(T.band->at(2 * py + (q >> 1), 2 * px + (q & 1) + 1) + j % n, y);
      } else {
        for (int l = 0; l < lanes; ++l) {
          const int o = j + l, q = o / n;
          T.band->at(2 * py + (q >> 1), 2 * px + (q & 1) + 1)[o % n] = y[l];
        }
      }
      break;
    }
  }
}

// Outputs of the tiles t0 + t, t < nt, of an h x w image: y = A^T m A + bias, then the
// epilogue.
PIE_CLONES void output_transform(const float* M, const WinogradConv& C, int64_t t0, int nt, int ntx, int T,
                                 int h, int w, const Target& dst) {
  const int64_t xs = int64_t{T} * C.cpad;  // between positions xi
  for (int t = 0; t < nt; ++t) {
    const int ty = static_cast<int>((t0 + t) / ntx), tx = static_cast<int>((t0 + t) % ntx);
    for (int j = 0; j < C.cout; j += 16) {
      const float* m0 = M + int64_t{t} * C.cpad + j;
      v16 s[kA][kM];  // s[column][.] = A^T m[column]
      for (int q = 0; q < kA; ++q) {
        v16 col[kA];
        for (int r = 0; r < kA; ++r) col[r] = load16(m0 + (kA * r + q) * xs);
        output_1d(col, s[q]);
      }
      const v16 b = load16(C.bias.data() + j);
      const int lanes = std::min(16, C.cout - j);
      for (int a = 0; a < kM; ++a) {
        const int py = kM * ty + a;
        if (py >= h) break;
        v16 row[kA], y[kM];
        for (int q = 0; q < kA; ++q) row[q] = s[q][a];
        output_1d(row, y);
        for (int c = 0; c < kM; ++c) {
          const int px = kM * tx + c;
          if (px < w) write_outputs(dst, y[c] + b, py, px, j, lanes);
        }
      }
    }
  }
}

// One convolution of ``in`` (LeakyReLU first when leaky_in) into the target, for the rows of
// tiles [ty0, ty1) (ty1 < 0: all). Threads split the rows of tiles; each takes its tiles in
// chunks of T, whose transformed inputs and products (V, M) take about 2 MiB, or more where
// the weights are large: they are read once per chunk. Neither changes a result.
void winograd_conv(const WinogradConv& C, const Act& in, bool leaky_in, const Target& dst, int threads,
                   int ty0 = 0, int ty1 = -1) {
  const int h = in.h, w = in.w, ntx = (w + kM - 1) / kM;
  if (ty1 < 0) ty1 = (h + kM - 1) / kM;
  const bool wide = wide_blocks();
  const int P = wide ? 8 : 6;
  const int64_t fit = (int64_t{2} << 20) / (int64_t{4} * kXi * (C.cin + C.cpad));
  const int64_t reuse = int64_t{C.cin} * C.cpad / (C.cin + C.cpad);  // weights read <= V and M
  const int T = static_cast<int>(std::max<int64_t>(P, std::min<int64_t>(256, std::max(fit, reuse) / P * P)));
  parallel_rows(ty1 - ty0, 2.0 * kXi * ntx * C.cin * C.cpad, threads, [&](int64_t b, int64_t e) {
    b += ty0;
    e += ty0;
    // V's rows past a chunk's tiles are multiplied too (whole blocks of P): zero, not stale
    const std::unique_ptr<float[]> V(new float[size_t{kXi} * T * C.cin]), M(new float[size_t{kXi} * T * C.cpad]);
    for (int64_t t0 = b * ntx; t0 < e * ntx; t0 += T) {
      const int nt = static_cast<int>(std::min<int64_t>(T, e * ntx - t0)), rows = (nt + P - 1) / P * P;
      input_transform(in, t0, nt, ntx, T, leaky_in, V.get());
      for (int xi = 0; xi < kXi && rows > nt; ++xi)
        std::fill_n(V.get() + (int64_t{xi} * T + nt) * C.cin, int64_t{rows - nt} * C.cin, 0.f);
      winograd_products(V.get(), C, rows, T, M.get(), wide);
      output_transform(M.get(), C, t0, nt, ntx, T, h, w, dst);
    }
  });
}

// u[xi][col] = (G g G^T)[xi] for the kernels g[k][col] (k = 3 ky + kx; double, rounded once
// to float), cols in [0, n); u's rows ``us`` apart. Elementwise over columns: vectorised.
PIE_CLONES void winograd_weights(const double* g, int n, float* u, int64_t us) {
  constexpr double kSixth = 1.0 / 6;
  std::vector<double> gt(size_t{3} * kA * n);  // gt[q][r][col] = (G g[.][q])[r]
  for (int q = 0; q < 3; ++q) {
    const double *g0 = g + q * n, *g1 = g + (3 + q) * n, *g2 = g + (6 + q) * n;
    double* t = gt.data() + static_cast<size_t>(q) * kA * n;
    for (int c = 0; c < n; ++c) {  // weight_1d, spelled out for the vectoriser
      t[c] = g0[c] * 0.25;
      t[n + c] = -((g0[c] + g1[c]) + g2[c]) * kSixth;
      t[2 * n + c] = -((g0[c] - g1[c]) + g2[c]) * kSixth;
      t[3 * n + c] = ((g0[c] * 0.25 + g1[c] * 0.5) + g2[c]) * kSixth;
      t[4 * n + c] = ((g0[c] * 0.25 - g1[c] * 0.5) + g2[c]) * kSixth;
      t[5 * n + c] = g2[c];
    }
  }
  for (int r = 0; r < kA; ++r) {
    const double* a0 = gt.data() + static_cast<size_t>(r) * n;
    const double *a1 = a0 + size_t{kA} * n, *a2 = a1 + size_t{kA} * n;
    float* ur = u + kA * r * us;
    for (int c = 0; c < n; ++c) {
      ur[c] = static_cast<float>(a0[c] * 0.25);
      ur[us + c] = static_cast<float>(-((a0[c] + a1[c]) + a2[c]) * kSixth);
      ur[2 * us + c] = static_cast<float>(-((a0[c] - a1[c]) + a2[c]) * kSixth);
      ur[3 * us + c] = static_cast<float>(((a0[c] * 0.25 + a1[c] * 0.5) + a2[c]) * kSixth);
      ur[4 * us + c] = static_cast<float>(((a0[c] * 0.25 - a1[c] * 0.5) + a2[c]) * kSixth);
      ur[5 * us + c] = static_cast<float>(a2[c]);
    }
  }
}

// The Winograd form of a convolution's weights [cout][cin][3][3]: output o goes to column
// perm[o] (perm empty: o); the padding columns are zero. Threads split the input channels.
WinogradConv make_winograd(const std::vector<float>& wt, const std::vector<float>& bias, int cout, int cin,
                           const std::vector<int>& perm, int threads) {
  WinogradConv C;
  C.cin = cin;
  C.cout = cout;
  C.cpad = (cout + 31) / 32 * 32;
  const int ld = C.cpad;
  C.u.reset(new float[size_t{kXi} * cin * ld]);
  C.bias.assign(ld, 0.f);
  std::vector<int> source(ld, -1);  // the output in each column
  for (int o = 0; o < cout; ++o) {
    const int col = perm.empty() ? o : perm[o];
    C.bias[col] = bias[o];
    source[col] = o;
  }
  float* u = C.u.get();
  parallel_rows(cin, 1000.0 * cout, threads, [&](int64_t b, int64_t e) {
    std::vector<double> g(size_t{9} * ld);
    for (int64_t ci = b; ci < e; ++ci) {
      for (int col = 0; col < ld; ++col)
        for (int k = 0; k < 9; ++k)
          g[static_cast<size_t>(k) * ld + col] =
              source[col] < 0 ? 0.0 : wt[(static_cast<size_t>(source[col]) * cin + ci) * 9 + k];
      winograd_weights(g.data(), ld, u + ci * ld, int64_t{cin} * ld);
    }
  });
  return C;
}

// ---- the last convolution -----------------------------------------------------------------
// Row r of the band, channel-planar: dst[channel][column] (wp columns).
void planar_row(const Band& in, int64_t r, float* __restrict dst) {
  const int c = in.c;
  const float* src = in.at(r, 0);
  for (int64_t x0 = 0; x0 < in.wp; x0 += 16) {  // blocks of 16 pixels x c channels
    const int64_t n = std::min<int64_t>(16, in.wp - x0);
    for (int ch = 0; ch < c; ++ch)
      for (int64_t l = 0; l < n; ++l) dst[ch * in.wp + x0 + l] = src[(x0 + l) * c + ch];
  }
}

// out[c][Y][x] for rows [y0, y1): bias + sum over (ky, kx, input channel) in that order, then
// out = out + y / 2 (transform: out holds the linear path) or y / 2 + 1/2. Lanes: 16 pixels,
// read from channel-planar copies of the three input rows.
// One output row Y in blocks of NB vectors V of pixels (32 pixels of AVX-512 registers, 16 of
// AVX2's: the 3 x NB sums and NB inputs stay in registers).
template <class V, int NB>
PIE_INLINE void output_row(const float* const rows[3], const OutputConv& F, int64_t Y, int64_t H, int64_t W,
                           int64_t wp, bool transform, float* out) {
  constexpr int L = kLanes<V>;
  const int cin = F.cin;
  for (int64_t x0 = 0; x0 < W; x0 += L * NB) {
    V a[3][NB];
    for (int c = 0; c < 3; ++c)
      for (int n = 0; n < NB; ++n) a[c][n] = splat<V>(F.bias[c]);
    for (int ky = 0; ky < 3; ++ky) {
      const float* row = rows[ky] + x0;
      for (int kx = 0; kx < 3; ++kx) {
        const float* wk = F.w.data() + static_cast<size_t>(3 * ky + kx) * cin * 3;
        for (int ci = 0; ci < cin; ++ci) {
          const float* src = row + ci * wp + kx;
          V in[NB];
          for (int n = 0; n < NB; ++n) in[n] = loadv<V>(src + L * n);
          for (int c = 0; c < 3; ++c) {
            const float wc = wk[3 * ci + c];
            for (int n = 0; n < NB; ++n) a[c][n] = a[c][n] + wc * in[n];
          }
        }
      }
    }
    for (int c = 0; c < 3; ++c)
      for (int n = 0; n < NB; ++n) {
        const int64_t x = x0 + L * n;
        if (x >= W) continue;
        float* o = out + (c * H + Y) * W + x;
        const V half = a[c][n] * 0.5f;
        if (x + L <= W) {
          storev<V>(o, transform ? loadv<V>(o) + half : half + 0.5f);
        } else {
          for (int64_t l = 0; l < W - x; ++l) o[l] = transform ? o[l] + half[l] : half[l] + 0.5f;
        }
      }
  }
}

PIE_CLONES void output_rows(const Band& in, const OutputConv& F, int64_t y0, int64_t y1, bool transform,
                            float* out) {
  const int64_t H = in.h, W = in.w, wp = in.wp;
  const size_t plane = static_cast<size_t>(F.cin) * wp;
  std::vector<float> ring(3 * plane);  // image row r in slot r mod 3
  auto slot = [&](int64_t r) { return ring.data() + static_cast<size_t>((r + 3) % 3) * plane; };
  for (int64_t r = y0 - 1; r < y0 + 1; ++r) planar_row(in, r, slot(r));
  const bool wide = wide_blocks();
  for (int64_t Y = y0; Y < y1; ++Y) {
    planar_row(in, Y + 1, slot(Y + 1));
    const float* const rows[3] = {slot(Y - 1), slot(Y), slot(Y + 1)};
    if (wide) output_row<v16, 2>(rows, F, Y, H, W, wp, transform, out);
    else output_row<v8, 2>(rows, F, Y, H, W, wp, transform, out);
  }
}

PIE_INLINE uint8_t to_level(float v) {
  v = v > 0.f ? v : 0.f;  // NaN -> 0
  v = v < 1.f ? v : 1.f;
  v = v * 255.f;
  const int i = static_cast<int>(v);          // floor: v >= 0
  const float f = v - static_cast<float>(i);  // exact
  return static_cast<uint8_t>(i + ((f > 0.5f || (f == 0.5f && (i & 1))) ? 1 : 0));
}

void declare_conv(Params& P, const std::string& name, int cout, int cin) {
  P.declare(name + ".weight", {cout, cin, 3, 3});
  P.declare(name + ".bias", {cout});
}

// The convolution ``name`` in Winograd form; its weights are released (the transformed ones
// are all that forward() reads).
WinogradConv winograd_param(Params& P, const std::string& name, int cout, int cin, int threads,
                            const std::vector<int>& perm = {}) {
  WinogradConv C = make_winograd(P.get(name + ".weight"), P.get(name + ".bias"), cout, cin, perm, threads);
  P.release(name + ".weight");
  return C;
}

}  // namespace

// ---- the decoder ------------------------------------------------------------------------------
ImageDecoder::ImageDecoder(int latent_dim_, std::vector<int> channels, std::vector<int> blocks,
                           std::vector<int> extra, bool transform_)
    : latent_dim(latent_dim_), stride(0), transform(transform_) {
  const int n = static_cast<int>(channels.size());
  if (latent_dim < 1 || latent_dim > 4096) throw std::invalid_argument("latent_dim must be in 1..4096");
  if (n < 1 || n > 8) throw std::invalid_argument("the decoder needs 1 to 8 stages of channels");
  for (int c : channels)
    if (c < 1 || c > 4096) throw std::invalid_argument("channels must be in 1..4096");
  if (static_cast<int>(blocks.size()) != n) throw std::invalid_argument("blocks needs one count per stage");
  if (extra.empty()) extra.assign(n, 0);
  if (static_cast<int>(extra.size()) != n)
    throw std::invalid_argument("extra_decoder_blocks needs one count per stage");
  for (int i = 0; i < n; ++i)
    if (blocks[i] < 0 || blocks[i] > 64 || extra[i] < 0 || extra[i] > 64)
      throw std::invalid_argument("block counts must be in 0..64");
  stride = 1 << n;
  // net: conv, then per stage (lowest resolution first) its blocks, LeakyReLU, conv,
  // PixelShuffle; then LeakyReLU, conv. extra.<stage>: after the stage's own blocks.
  const int D = latent_dim;
  int j = 0;
  declare_conv(params_, "net.0", channels[n - 1], D);
  ++j;
  for (int i = 0; i < n; ++i) {
    const int stage = n - 1 - i;
    Stage S;
    S.channels = channels[stage];
    S.next = stage > 0 ? channels[stage - 1] : 32;
    for (int k = 0; k < blocks[stage]; ++k) S.blocks.push_back({"net." + std::to_string(j++), {}, {}});
    for (int k = 0; k < extra[stage]; ++k)
      S.blocks.push_back({"extra." + std::to_string(stage) + "." + std::to_string(k), {}, {}});
    for (const Residual& r : S.blocks) {
      declare_conv(params_, r.name + ".conv1", S.channels, S.channels);
      declare_conv(params_, r.name + ".conv2", S.channels, S.channels);
    }
    ++j;  // LeakyReLU
    S.up_name = "net." + std::to_string(j);
    declare_conv(params_, S.up_name, 4 * S.next, S.channels);
    j += 2;  // the conv, PixelShuffle
    stages_.push_back(std::move(S));
  }
  ++j;  // LeakyReLU
  out_name_ = "net." + std::to_string(j);
  declare_conv(params_, out_name_, 3, 32);
  if (transform) {
    params_.declare("linear.weight", {D, 3, stride, stride});
    params_.declare("linear.bias", {3});
    params_.declare("scale", {D});
  }
}

void ImageDecoder::finalize(int threads) {
  params_.check_complete();
  ready_ = false;
  FlushDenormals flush;  // the weights' transform too: denormals flushed whatever the caller's mode
  const int D = latent_dim;
  first_ = winograd_param(params_, "net.0", stages_[0].channels, D, threads);
  for (Stage& S : stages_) {
    for (Residual& r : S.blocks) {
      r.conv1 = winograd_param(params_, r.name + ".conv1", S.channels, S.channels, threads);
      r.conv2 = winograd_param(params_, r.name + ".conv2", S.channels, S.channels, threads);
    }
    // PixelShuffle(2): conv output c * 4 + 2 * i + j is channel c of pixel (2y + i, 2x + j);
    // it becomes column (2 * i + j) * next + c
    std::vector<int> perm(4 * S.next);
    for (int c = 0; c < S.next; ++c)
      for (int q = 0; q < 4; ++q) perm[4 * c + q] = q * S.next + c;
    S.up = winograd_param(params_, S.up_name, 4 * S.next, S.channels, threads, perm);
  }
  const std::vector<float>& w = params_.get(out_name_ + ".weight");  // [3][32][3][3]
  out_.cin = 32;
  out_.w.assign(size_t{9} * 32 * 3, 0.f);
  for (int c = 0; c < 3; ++c)
    for (int ci = 0; ci < 32; ++ci)
      for (int k = 0; k < 9; ++k) out_.w[(static_cast<size_t>(k) * 32 + ci) * 3 + c] = w[(c * 32 + ci) * 9 + k];
  for (int c = 0; c < 3; ++c) out_.bias[c] = params_.get(out_name_ + ".bias")[c];
  if (transform) {
    const int ss = stride * stride;
    linear_.in = D;
    linear_.out = 3 * ss;
    linear_.wt = params_.get("linear.weight");  // [D][3][s][s] = [in][out]
    linear_.b.assign(3 * ss, 0.f);
    for (int c = 0; c < 3; ++c)
      std::fill(linear_.b.begin() + c * ss, linear_.b.begin() + (c + 1) * ss, params_.get("linear.bias")[c]);
    scale_ = params_.get("scale");
  }
  ready_ = true;
}

void ImageDecoder::forward(const float* z, int h, int w, float* out, int threads) const {
  if (!ready_) throw std::logic_error("ImageDecoder: finalize() before forward()");
  if (h < 1 || w < 1) throw std::invalid_argument("the latent must be at least 1 x 1");
  FlushDenormals flush;
  const int D = latent_dim, s = stride;
  const int64_t H = int64_t{h} * s, W = int64_t{w} * s, hw = int64_t{h} * w;
  // the branch's input z (/ scale), channels-last; the linear path into out
  auto x = std::make_unique<Act>(h, w, D);
  parallel_rows(h, 4.0 * w * D, threads, [&](int64_t b, int64_t e) {
    for (int64_t y = b; y < e; ++y)
      for (int64_t xx = 0; xx < w; ++xx) {
        float* dst = x->at(y + 1, xx + 1);
        for (int d = 0; d < D; ++d) {
          const float v = z[d * hw + y * w + xx];
          dst[d] = transform ? v / scale_[d] : v;
        }
      }
  });
  if (transform) {
    const int ss = s * s;
    parallel_rows(h, 2.0 * w * D * 3 * ss, threads, [&](int64_t b, int64_t e) {
      std::vector<float> zc(static_cast<size_t>(w) * D), lin(static_cast<size_t>(w) * 3 * ss);
      for (int64_t y = b; y < e; ++y) {
        for (int64_t xx = 0; xx < w; ++xx)
          for (int d = 0; d < D; ++d) zc[xx * D + d] = z[d * hw + y * w + xx];
        linear_rows(zc.data(), 0, w, linear_, 0, 3 * ss, D, lin.data(), 3 * ss);
        for (int c = 0; c < 3; ++c)
          for (int i = 0; i < s; ++i) {
            float* row = out + (c * H + y * s + i) * W;
            for (int64_t xx = 0; xx < w; ++xx)
              std::copy_n(lin.data() + xx * 3 * ss + c * ss + i * s, s, row + xx * s);
          }
      }
    });
  }
  // net
  {
    auto x1 = std::make_unique<Act>(h, w, first_.cout);
    winograd_conv(first_, *x, false, {Epilogue::kStore, x1.get()}, threads);
    x = std::move(x1);
  }
  for (size_t i = 0; i < stages_.size(); ++i) {
    const Stage& S = stages_[i];
    const int sh = x->h, sw = x->w;
    if (!S.blocks.empty()) {
      Act t(sh, sw, S.channels);
      for (const Residual& r : S.blocks) {
        winograd_conv(r.conv1, *x, true, {Epilogue::kLeaky, &t}, threads);
        winograd_conv(r.conv2, t, false, {Epilogue::kResidual, x.get()}, threads);
      }
    }
    if (i + 1 < stages_.size()) {
      auto next = std::make_unique<Act>(2 * sh, 2 * sw, S.next);
      winograd_conv(S.up, *x, true, {Epilogue::kShuffle, next.get(), nullptr, S.next}, threads);
      x = std::move(next);
    }
  }
  // The last upsampling convolution and the output convolution, in bands of R rows of tiles
  // (2 * kM * R image rows): the upsampled activations never exist whole. A band's buffer
  // holds image rows [2 kM tb - 2, 2 kM te] (one more: the border below the image): two
  // carried over from the band before, then the band's; the output rows whose neighbours are
  // all there follow.
  const Stage& S = stages_.back();
  const int nty = (x->h + kM - 1) / kM, R = std::max(2, threads), band = 2 * kM * R;
  Band p(band + 3, static_cast<int>(H), static_cast<int>(W), S.next);
  const size_t row_floats = static_cast<size_t>(p.wp) * p.c;
  for (int tb = 0; tb < nty; tb += R) {
    const int te = std::min(nty, tb + R);
    const int64_t first = int64_t{2} * kM * tb - 2;  // buffer row 0
    if (tb > 0) std::copy_n(p.at(first, 0), 2 * row_floats, p.buf.get());  // at the last band's row0
    else std::fill_n(p.buf.get(), 2 * row_floats, 0.f);                   // rows -2, -1: above the image
    p.row0 = first;
    const int64_t end = std::min<int64_t>(H, int64_t{2} * kM * te);  // rows computed: [first + 2, end)
    const int64_t stop = first + 3 + band;
    if (end < stop) std::fill_n(p.at(end, 0), (stop - end) * row_floats, 0.f);  // below the image
    winograd_conv(S.up, *x, true, {Epilogue::kShuffleLast, nullptr, &p, S.next}, threads, tb, te);
    const int64_t y0 = std::max<int64_t>(0, first + 1), y1 = te == nty ? H : end - 1;
    parallel_rows(y1 - y0, 2.0 * 27 * 32 * W, threads,
                  [&](int64_t b, int64_t e) { output_rows(p, out_, y0 + b, y0 + e, transform, out); });
  }
}

void to_pixels(const float* x, int64_t Hs, int64_t Ws, int H, int W, uint8_t* out, int threads) {
  parallel_rows(H, 20.0 * W, threads, [&](int64_t b, int64_t e) {
    for (int64_t y = b; y < e; ++y)
      for (int64_t xx = 0; xx < W; ++xx)
        for (int c = 0; c < 3; ++c) out[(y * W + xx) * 3 + c] = to_level(x[(c * Hs + y) * Ws + xx]);
  });
}

}  // namespace pie
