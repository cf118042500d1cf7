#include "kernels/cpu/optim.h"

#include <cmath>
#include <cstddef>

#include "engine/check.h"

namespace climseg::cpu {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

int64_t total_elements(const OptimChunks& ch) {
  return ch.size() == 0 ? 0 : ch.end.back() - ch.begin.front();  // an upper bound is enough for the threshold
}

// The model copy: fp32/fp64 as is, or rounded through fp16/bf16 to nearest even (engine/dtype.h's conversions,
// overflow to inf as the real 16-bit store).
inline float to_storage(float x, DType storage) {
  switch (storage) {
    case DType::f16:
      return half_to_float(float_to_half(x));
    case DType::bf16:
      return bf16_to_float(float_to_bf16(x));
    default:
      return x;
  }
}
inline double to_storage(double x, DType) { return x; }

// Adds per-chunk values per tensor in chunk order.
template <class V>
void sum_per_tensor(const OptimChunks& ch, const std::vector<V>& partial, V* out) {
  for (int64_t t = 0; t < ch.ntensors(); ++t) {
    V s = V(0);
    for (int64_t c = ch.first[t]; c < ch.first[t + 1]; ++c) s += partial[static_cast<size_t>(c)];
    out[t] = s;
  }
}

template <optim::Update K, class T>
void update_chunks(const OptimChunks& ch, const optim::Scalars<T>& s, const double* factor, const T* grads, T* master,
                   T* m, T* v, T* model, DType storage, std::vector<double>& u_partial) {
  const int64_t nchunks = ch.size();
#pragma omp parallel for schedule(static) if (total_elements(ch) >= kParallelMin)
  for (int64_t c = 0; c < nchunks; ++c) {
    const T f = static_cast<T>(factor[ch.tensor[c]]);
    double u2 = 0;
    for (int64_t i = ch.begin[c]; i < ch.end[c]; ++i) {
      const T g = optim::effective_grad(s, grads[i], f);
      if constexpr (K == optim::Update::sgd) {
        T unused = T(0);
        optim::sgd_update(s, g, master[i], s.has_momentum ? m[i] : unused);
        model[i] = to_storage(master[i], storage);
      } else if constexpr (K == optim::Update::adam || K == optim::Update::adamw) {
        optim::adam_update(s, g, master[i], m[i], v[i], K == optim::Update::adamw);
        model[i] = to_storage(master[i], storage);
      } else {
        optim::adam_moments(s, g, m[i], v[i]);
        const double u = static_cast<double>(optim::lamb_direction(s, master[i], m[i], v[i]));
        u2 += u * u;
      }
    }
    if constexpr (K == optim::Update::lamb) u_partial[static_cast<size_t>(c)] = u2;
  }
}

}  // namespace

OptimChunks optim_chunks(const std::vector<int64_t>& offsets, const std::vector<int64_t>& numels, int64_t chunk) {
  CS_CHECK(offsets.size() == numels.size(), "optim_chunks: ", offsets.size(), " offsets, ", numels.size(), " sizes");
  CS_CHECK(chunk > 0, "optim_chunks: chunk size ", chunk);
  OptimChunks ch;
  ch.first.push_back(0);
  for (size_t t = 0; t < offsets.size(); ++t) {
    for (int64_t b = 0; b < numels[t]; b += chunk) {
      ch.begin.push_back(offsets[t] + b);
      ch.end.push_back(offsets[t] + (b + chunk < numels[t] ? b + chunk : numels[t]));
      ch.tensor.push_back(static_cast<int32_t>(t));
    }
    ch.first.push_back(ch.size());
  }
  return ch;
}

template <class T>
void optim_sums(const OptimChunks& ch, const T* grads, T grad_scale, const T* master, int64_t* nonfinite,
                double* g_sumsq, double* w_sumsq) {
  const int64_t nchunks = ch.size();
  std::vector<int64_t> bad(static_cast<size_t>(nchunks), 0);
  std::vector<double> g2(static_cast<size_t>(nchunks), 0.0), w2(master ? static_cast<size_t>(nchunks) : 0, 0.0);
#pragma omp parallel for schedule(static) if (total_elements(ch) >= kParallelMin)
  for (int64_t c = 0; c < nchunks; ++c) {
    int64_t nb = 0;
    double sg = 0, sw = 0;
    for (int64_t i = ch.begin[c]; i < ch.end[c]; ++i) {
      const T g = optim::mul(grad_scale, grads[i]);
      nb += std::isfinite(g) ? 0 : 1;
      sg += static_cast<double>(g) * static_cast<double>(g);
    }
    if (master)
      for (int64_t i = ch.begin[c]; i < ch.end[c]; ++i) sw += static_cast<double>(master[i]) * master[i];
    bad[static_cast<size_t>(c)] = nb;
    g2[static_cast<size_t>(c)] = sg;
    if (master) w2[static_cast<size_t>(c)] = sw;
  }
  sum_per_tensor(ch, bad, nonfinite);
  sum_per_tensor(ch, g2, g_sumsq);
  if (master) sum_per_tensor(ch, w2, w_sumsq);
}

template <class T>
void optim_update(const OptimChunks& ch, optim::Update kind, const optim::Scalars<T>& s, const double* factor,
                  const T* grads, T* master, T* m, T* v, T* model, DType storage, double* u_sumsq) {
  std::vector<double> u_partial;
  switch (kind) {
    case optim::Update::sgd:
      update_chunks<optim::Update::sgd>(ch, s, factor, grads, master, m, v, model, storage, u_partial);
      return;
    case optim::Update::adam:
      update_chunks<optim::Update::adam>(ch, s, factor, grads, master, m, v, model, storage, u_partial);
      return;
    case optim::Update::adamw:
      update_chunks<optim::Update::adamw>(ch, s, factor, grads, master, m, v, model, storage, u_partial);
      return;
    case optim::Update::lamb:
      CS_CHECK(u_sumsq != nullptr, "optim_update: LAMB needs the per-tensor u sums");
      u_partial.assign(static_cast<size_t>(ch.size()), 0.0);
      update_chunks<optim::Update::lamb>(ch, s, factor, grads, master, m, v, model, storage, u_partial);
      sum_per_tensor(ch, u_partial, u_sumsq);
      return;
  }
  CS_THROW("optim_update: unknown update kind ", static_cast<int>(kind));
}

template <class T>
void optim_lamb_apply(const OptimChunks& ch, const optim::Scalars<T>& s, const double* lr_ratio, T* master, const T* m,
                      const T* v, T* model, DType storage) {
  const int64_t nchunks = ch.size();
#pragma omp parallel for schedule(static) if (total_elements(ch) >= kParallelMin)
  for (int64_t c = 0; c < nchunks; ++c) {
    const T a = static_cast<T>(lr_ratio[ch.tensor[c]]);
    for (int64_t i = ch.begin[c]; i < ch.end[c]; ++i) {
      const T u = optim::lamb_direction(s, master[i], m[i], v[i]);
      master[i] = optim::sub(master[i], optim::mul(a, u));
      model[i] = to_storage(master[i], storage);
    }
  }
}

template <class T>
void optim_store_model(const OptimChunks& ch, const T* master, T* model, DType storage) {
  const int64_t nchunks = ch.size();
#pragma omp parallel for schedule(static) if (total_elements(ch) >= kParallelMin)
  for (int64_t c = 0; c < nchunks; ++c)
    for (int64_t i = ch.begin[c]; i < ch.end[c]; ++i) model[i] = to_storage(master[i], storage);
}

#define CS_INSTANTIATE(T)                                                                                             \
  template void optim_sums<T>(const OptimChunks&, const T*, T, const T*, int64_t*, double*, double*);                 \
  template void optim_update<T>(const OptimChunks&, optim::Update, const optim::Scalars<T>&, const double*, const T*, \
                                T*, T*, T*, T*, DType, double*);                                                      \
  template void optim_lamb_apply<T>(const OptimChunks&, const optim::Scalars<T>&, const double*, T*, const T*,        \
                                    const T*, T*, DType);                                                             \
  template void optim_store_model<T>(const OptimChunks&, const T*, T*, DType);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
