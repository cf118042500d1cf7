// Data parallelism on CUDA devices (comm/data_parallel.h over the NCCL transport), 2 ranks under mpirun: the
// gradient reductions overlap backward, with the host waiting once per step, and the optimizer reads the sums.
// - Each bucket's reduction is queued on the communication stream without a host wait: in cudasim's deferred-stream
//   mode none of them has run when backward (with its bucket hooks) has been enqueued, and all have after finish().
// - finish() leaves the exact sum over the ranks (2 ranks: one fp32 addition, exact whatever the order) in the
//   optimizer's buffer, and the compute stream ordered after it (the deferred mode runs the streams in a random
//   interleaving: a missing event wait reads unreduced gradients).
// - Trainer steps with --check-replicas semantics (a CRC-32C of the master weights compared every step) with
//   ncclAllReduce, our ring over NCCL send/recv, and gradient lag 1.
// Runs in the emulation build (stand-in NCCL over MPI, kernels/cudasim/nccl.cpp; labels mpi;cudasim, and a deferred
// copy) and on a machine with 2 GPUs; reported as skipped elsewhere (exit 77 on every rank).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <mpi.h>
#if defined(CLIMSEG_HAVE_CUDA)
#include <cuda_runtime.h>  // in the emulation build, the stand-in's: it defines CUDASIM
#endif

#include <cstdio>
#include <cstring>
#include <vector>

#include "comm/data_parallel.h"
#include "engine/tensor.h"
#include "tests/util/train_batch.h"
#include "train/trainer.h"
#if defined(CUDASIM)
#include "cudasim/testing.h"
#endif

using namespace climseg;

namespace {

constexpr int64_t kB = 1, kH = 32, kW = 48;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

TrainerConfig tiny(const std::string& algo, int lag) {
  TrainerConfig c;
  c.model = ModelConfig::defaults("tiramisu");
  c.model.blocks = {1, 1, 1, 1, 1};
  c.model.growth = 4;
  c.model.kernel = 3;
  c.model.dropout = 0;
  c.batch = kB;
  c.height = kH;
  c.width = kW;
  c.precision = resolve_precision("fp32", Device::cuda);
  c.loss = reference_loss(c.model);
  c.optimizer.kind = OptimizerKind::sgd;
  c.schedule.base_lr = 1.0;
  c.scaler.mode = LossScaleMode::none;
  c.seed = 5;
  c.ranks = 2;
  c.dist.algo = algo;
  c.dist.bucket_mb = 0.01;  // several buckets for this small net
  c.dist.lag = lag;
  c.dist.check_replicas = 1;  // every step: all ranks hold the same master weights, or the step throws
  return c;
}

std::vector<float> host_floats(const Tensor& t, ExecContext& ctx) {
  Tensor h = t.to(Device::cpu, &ctx);
  ctx.synchronize();
  const float* p = h.data_as<float>();
  return {p, p + h.numel()};
}

}  // namespace

TEST_CASE("CUDA data parallel: bucket reductions queued during backward, the exact sum after finish",
          "[mpi][cuda][data_parallel]") {
  const int rank = world_rank();
  ExecContext ctx(Device::cuda);
  ctx.deterministic = true;
  for (const char* algo : {"nccl", "ring"}) {
    INFO("--allreduce " << algo);
    Trainer t(tiny(algo, 0), ctx);
    comm::DataParallel* dp = t.data_parallel();
    REQUIRE(dp != nullptr);
    Net& net = t.net();
    const test::TrainBatch b = test::make_train_batch(40 + static_cast<uint64_t>(rank), kB, kH, kW);
    net.input_tensor(t.graph().input).copy_from(b.data, &ctx);
    net.input_tensor(t.graph().labels).copy_from(b.labels, &ctx);
    Tensor one = Tensor::empty(Shape{1, 1, 1, 1}, DType::f32, Device::cpu);
    one.set_flat(0, 1.0);
    // This rank's own gradient, and the sum over both ranks (2 values: exact in fp32).
    net.forward(ctx);
    net.output_grad().copy_from(one, &ctx);
    net.backward(ctx);
    const std::vector<float> mine = host_floats(net.grad_buffer(), ctx);
    std::vector<float> sum(mine.size());
    MPI_Allreduce(mine.data(), sum.data(), static_cast<int>(mine.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    // Again, with the buckets reduced as backward goes.
    net.forward(ctx);
    net.output_grad().copy_from(one, &ctx);
#if defined(CUDASIM) && defined(CLIMSEG_HAVE_NCCL)
    const size_t ran0 = cudasim::nccl_ops_run();
#endif
    net.backward(ctx, GradMode::overwrite, [&](int node) { dp->node_done(node); });
#if defined(CUDASIM) && defined(CLIMSEG_HAVE_NCCL)
    // Deferred mode: nothing forced the communication stream, so no reduction has run: the host did not wait.
    if (cudasim::deferred()) CHECK(cudasim::nccl_ops_run() == ran0);
#endif
    dp->finish();
#if defined(CUDASIM) && defined(CLIMSEG_HAVE_NCCL)
    CHECK(cudasim::nccl_ops_run() > ran0);
#endif
    const std::vector<float> got = host_floats(dp->optimizer_grads(), ctx);
    REQUIRE(got.size() == sum.size());
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += std::memcmp(&got[i], &sum[i], sizeof(float)) != 0;
    CHECK(bad == 0);
  }
}

TEST_CASE("CUDA data parallel: Trainer steps keep the replicas identical (nccl, ring over NCCL, gradient lag 1)",
          "[mpi][cuda][data_parallel][trainer]") {
  const int rank = world_rank();
  ExecContext ctx(Device::cuda);
  struct Case {
    const char* algo;
    int lag;
  };
  for (const Case c : {Case{"nccl", 0}, Case{"ring", 0}, Case{"nccl", 1}}) {
    INFO("--allreduce " << c.algo << " --gradient-lag " << c.lag);
    Trainer t(tiny(c.algo, c.lag), ctx);
    double first = 0, last = 0;
    for (int s = 0; s < 4; ++s) {
      const test::TrainBatch b = test::make_train_batch(60 + static_cast<uint64_t>(2 * s + rank), kB, kH, kW);
      const StepStats st = t.step(b.data, b.labels);  // throws when the replicas differ (check_replicas 1)
      CHECK(st.applied);
      if (s == 0) first = st.loss;
      last = st.loss;
    }
    CHECK(t.state().iteration == 4);
    CHECK(t.state().samples == 4 * kB * 2);
    CHECK(last < first);  // it learns
  }
}

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int devices = cuda_device_count();
  int rc = 0;
#if !defined(CLIMSEG_HAVE_NCCL)
  const bool skip = true;
  const char* why = "built without NCCL";
  (void)devices;
#elif defined(CUDASIM)
  const bool skip = size != 2 || devices < 1;  // the emulated device is shared by the ranks
  const char* why = "needs 2 ranks";
#else
  const bool skip = size != 2 || devices < 2;  // NCCL refuses two ranks on one GPU
  const char* why = "needs 2 ranks and 2 CUDA devices";
#endif
  if (skip) {
    if (world_rank() == 0) std::printf("SKIPPED: %s\n", why);
    rc = 77;
  } else {
    rc = Catch::Session().run(argc, argv);
  }
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
