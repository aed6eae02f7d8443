// Batch normalization from scratch as one MXNet operator: perf.bn_impl=compiled of bnexp's
// scratch layer (bnexp/nn/norm/scratch.py), for MXNet 1.9's extension library API (lib_api.h,
// loaded with mx.library.load; built per machine by bnexp/nn/norm/kernels/__init__.py).
// The maths is the scratch layer's: per-channel batch mean and biased variance, x_hat =
// (x - mean) / sqrt(var + eps), y = gamma * x_hat + beta, moving = m * moving + (1 - m) * batch.
//
//   bnexp_batch_norm(data, gamma, beta, moving_mean, moving_var, training,
//                    momentum=0.9, eps=1e-5)
//     -> (out, mean, invstd)
//
// data: (N, C, ...) float32, channel axis 1 (NC, NCHW, NC...); statistics over all other axes.
// training: a float tensor whose first element is 1 in training and 0 in inference. The
//   library API does not hand an operator MXNet's is_train (OpContext is not forwarded to
//   the library), so the mode comes in as data, e.g. from bnexp's TrainingFlag.
// moving_mean, moving_var: mutable inputs (FMutateInputs); in training they are updated in
//   place in the forward pass, moving = momentum * moving + (1 - momentum) * batch, with the
//   batch variance biased (as MXNet's BatchNorm, which does it in its backward pass).
// mean, invstd: the statistics used (batch ones in training, moving ones in inference), for
//   the backward pass; treated as non-differentiable (their incoming gradients are ignored).
//
// Backward inputs (lib_api's convention): ograds of the 3 outputs, the 6 inputs, the 3
// outputs. Outputs: gradients of the 6 inputs; only data, gamma and beta are written (the
// library API does not pass the OpReqType, so grad_req="add" is not honoured either).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;

namespace {

struct Dims {
  int64_t n = 0, c = 0, l = 0;  // data viewed as (N, C, L)
};

Dims dims_of(const MXTensor& t) {
  Dims d;
  d.n = t.shape[0];
  d.c = t.shape[1];
  d.l = 1;
  for (size_t i = 2; i < t.shape.size(); ++i) d.l *= t.shape[i];
  return d;
}

float attr_float(const std::unordered_map<std::string, std::string>& attrs, const char* key,
                 float fallback) {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : std::strtof(it->second.c_str(), nullptr);
}

bool is_training(MXTensor& flag) { return flag.data<float>()[0] > 0.5f; }

// Sum of (x - k) and of (x - k)^2 over one row of L values, in float lanes.
inline void row_moments(const float* __restrict x, int64_t l, float k, float* s1, float* s2) {
  float a = 0.f, b = 0.f;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < l; ++i) {
    const float v = x[i] - k;
    a += v;
    b += v * v;
  }
  *s1 = a;
  *s2 = b;
}

inline void row_affine(const float* __restrict x, float* __restrict y, int64_t l, float s,
                       float t) {
#pragma omp simd
  for (int64_t i = 0; i < l; ++i) y[i] = x[i] * s + t;
}

// Sum of dy and of dy * (x - m) over one row.
inline void row_grad_sums(const float* __restrict dy, const float* __restrict x, int64_t l,
                          float m, float* s1, float* s2) {
  float a = 0.f, b = 0.f;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < l; ++i) {
    a += dy[i];
    b += dy[i] * (x[i] - m);
  }
  *s1 = a;
  *s2 = b;
}

inline void row_grad_data(const float* __restrict dy, const float* __restrict x,
                          float* __restrict dx, int64_t l, float a, float b, float c) {
#pragma omp simd
  for (int64_t i = 0; i < l; ++i) dx[i] = a * dy[i] + b * x[i] + c;
}

MXReturnValue forward(const std::unordered_map<std::string, std::string>& attrs,
                      std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                      const OpResource& res) {
  MXTensor& data = (*inputs)[0];
  const Dims d = dims_of(data);
  const float* x = data.data<float>();
  const float* gamma = (*inputs)[1].data<float>();
  const float* beta = (*inputs)[2].data<float>();
  float* moving_mean = (*inputs)[3].data<float>();
  float* moving_var = (*inputs)[4].data<float>();
  const bool training = is_training((*inputs)[5]);
  float* y = (*outputs)[0].data<float>();
  float* mean_out = (*outputs)[1].data<float>();
  float* invstd_out = (*outputs)[2].data<float>();
  const float momentum = attr_float(attrs, "momentum", 0.9f);
  const float eps = attr_float(attrs, "eps", 1e-5f);
  const int64_t N = d.n, C = d.c, L = d.l;
  const double count = static_cast<double>(N * L);

#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double mean, var;
    if (training) {
      // One pass, shifted by the channel's first value against cancellation.
      const float k = x[c * L];
      double s1 = 0, s2 = 0;
      for (int64_t n = 0; n < N; ++n) {
        float a, b;
        row_moments(x + (n * C + c) * L, L, k, &a, &b);
        s1 += a;
        s2 += b;
      }
      const double m1 = s1 / count;
      mean = k + m1;
      var = s2 / count - m1 * m1;  // biased
      if (var < 0) var = 0;
      moving_mean[c] = momentum * moving_mean[c] + (1 - momentum) * static_cast<float>(mean);
      moving_var[c] = momentum * moving_var[c] + (1 - momentum) * static_cast<float>(var);
    } else {
      mean = moving_mean[c];
      var = moving_var[c];
    }
    const double invstd = 1.0 / std::sqrt(var + eps);
    mean_out[c] = static_cast<float>(mean);
    invstd_out[c] = static_cast<float>(invstd);
    const float s = static_cast<float>(gamma[c] * invstd);
    const float t = static_cast<float>(beta[c] - mean * gamma[c] * invstd);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t off = (n * C + c) * L;
      row_affine(x + off, y + off, L, s, t);
    }
  }
  return MX_SUCCESS;
}

MXReturnValue backward(const std::unordered_map<std::string, std::string>& attrs,
                       std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                       const OpResource& res) {
  // inputs: 0 dy, 1 dmean, 2 dinvstd, 3 x, 4 gamma, 5 beta, 6 mm, 7 mv, 8 training,
  //         9 y, 10 mean, 11 invstd
  const float* dy = (*inputs)[0].data<float>();
  MXTensor& data = (*inputs)[3];
  const Dims d = dims_of(data);
  const float* x = data.data<float>();
  const float* gamma = (*inputs)[4].data<float>();
  const bool training = is_training((*inputs)[8]);
  const float* mean_in = (*inputs)[10].data<float>();
  const float* invstd_in = (*inputs)[11].data<float>();
  float* dx = (*outputs)[0].data<float>();
  float* dgamma = (*outputs)[1].data<float>();
  float* dbeta = (*outputs)[2].data<float>();
  const int64_t N = d.n, C = d.c, L = d.l;
  const double count = static_cast<double>(N * L);

#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const float m = mean_in[c];
    const double invstd = invstd_in[c];
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t off = (n * C + c) * L;
      float a, b;
      row_grad_sums(dy + off, x + off, L, m, &a, &b);
      sdy += a;
      sdyx += b;
    }
    if (dgamma) dgamma[c] = static_cast<float>(sdyx * invstd);
    if (dbeta) dbeta[c] = static_cast<float>(sdy);
    if (!dx) continue;
    const double g = gamma[c];
    // dx = g*invstd*(dy - mean(dy) - (x - m)*invstd^2*mean(dy*(x - m)))  (training)
    //    = a*dy + b*x + cc
    const double a = g * invstd;
    double b = 0, cc = 0;
    if (training) {
      b = -g * invstd * invstd * invstd * sdyx / count;
      cc = -a * sdy / count - b * m;
    }
    const float af = static_cast<float>(a), bf = static_cast<float>(b),
                cf = static_cast<float>(cc);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t off = (n * C + c) * L;
      row_grad_data(dy + off, x + off, dx + off, L, af, bf, cf);
    }
  }
  return MX_SUCCESS;
}

MXReturnValue parse_attrs(const std::unordered_map<std::string, std::string>& attrs,
                          int* num_in, int* num_out) {
  *num_in = 6;
  *num_out = 3;
  return MX_SUCCESS;
}

MXReturnValue infer_type(const std::unordered_map<std::string, std::string>& attrs,
                         std::vector<int>* in_types, std::vector<int>* out_types) {
  for (size_t i = 0; i < in_types->size(); ++i) {
    if ((*in_types)[i] != kFloat32 && (*in_types)[i] != -1) {
      MX_ERROR_MSG << "bnexp_batch_norm: input " << i << " must be float32";
      return MX_FAIL;
    }
    (*in_types)[i] = kFloat32;
  }
  for (auto& t : *out_types) t = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const std::unordered_map<std::string, std::string>& attrs,
                          std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  const auto& data = (*in_shapes)[0];
  if (data.size() < 2) {
    MX_ERROR_MSG << "bnexp_batch_norm: data must have a channel axis 1 (NC or NCHW), got "
                 << data.size() << " axes";
    return MX_FAIL;
  }
  const unsigned c = data[1];
  for (int i = 1; i <= 4; ++i) (*in_shapes)[i] = {c};
  if ((*in_shapes)[5].empty()) (*in_shapes)[5] = {1};
  (*out_shapes)[0] = data;
  (*out_shapes)[1] = {c};
  (*out_shapes)[2] = {c};
  return MX_SUCCESS;
}

MXReturnValue mutate_inputs(const std::unordered_map<std::string, std::string>& attrs,
                            std::vector<int>* input_indices) {
  input_indices->push_back(3);
  input_indices->push_back(4);
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(bnexp_batch_norm)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu")
    .setParseAttrs(parse_attrs)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setMutateInputs(mutate_inputs);

MXReturnValue initialize(int version) {
  if (version >= 10900) return MX_SUCCESS;
  MX_ERROR_MSG << "bnexp_batch_norm needs MXNet >= 1.9, got " << version;
  return MX_FAIL;
}
