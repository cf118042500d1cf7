// climseg: the command-line interface (CLI11 subcommands): info, demo, plan; with HDF5 also train, eval, predict and
// the data tools. `demo` is a short end-to-end demonstration of the engine on generated tensors (no files).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "apps/demo.h"
#include "apps/plan.h"
#if defined(CLIMSEG_HAVE_IO)
#include "apps/data.h"
#include "apps/events.h"
#include "apps/predict.h"
#include "apps/train.h"
#endif
#include "comm/ranks.h"
#include "engine/check.h"
#include "engine/tensor.h"
#include "kernels/cublas/gemm.h"
#include "kernels/cudnn/conv.h"
#if defined(CLIMSEG_HAVE_NCCL) && defined(CLIMSEG_HAVE_MPI) && defined(CLIMSEG_HAVE_IO)
#include "comm/transport.h"
#endif

namespace {

void print_info() {
  std::printf("climseg %s\n", "0.1.0");
#if defined(CLIMSEG_HAVE_CUDA)
  std::printf("CUDA backend: yes (architectures %s)\n", CLIMSEG_CUDA_ARCHS);
#else
  std::printf("CUDA backend: no (built without a CUDA compiler)\n");
#endif
#if defined(CLIMSEG_HAVE_CUDNN)
  std::printf("cuDNN: yes\n");
#else
  std::printf("cuDNN: no\n");
#endif
#if defined(CLIMSEG_HAVE_NCCL)
  std::printf("NCCL: yes\n");
#else
  std::printf("NCCL: no\n");
#endif
#if defined(CLIMSEG_HAVE_MPI)
  std::printf("MPI: yes\n");
#else
  std::printf("MPI: no\n");
#endif
#if defined(CLIMSEG_HAVE_HDF5)
  std::printf("HDF5: yes\n");
#else
  std::printf("HDF5: no\n");
#endif
  const int n = climseg::cuda_device_count();
  std::printf("CUDA devices visible: %d\n", n);
  // What is loaded at run time (the libraries found on this machine), not what the headers said at build time.
  auto ver = [](long v, long major_div, long minor_div) {
    return std::to_string(v / major_div) + "." + std::to_string(v % major_div / minor_div) + "." +
           std::to_string(v % minor_div);
  };
  if (n > 0) {
    const int drv = climseg::cuda_driver_version(), rt = climseg::cuda_runtime_version();
    std::printf("CUDA driver %d.%d, runtime %d.%d\n", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    for (int d = 0; d < n; ++d) {
      const climseg::CudaDeviceInfo i = climseg::cuda_device_info(d);
      std::printf("device %d: %s, compute capability %d.%d, %.1f GiB, %d multiprocessors\n", d, i.name.c_str(),
                  i.major, i.minor, static_cast<double>(i.memory_bytes) / (1024.0 * 1024.0 * 1024.0),
                  i.multiprocessors);
    }
    std::printf("cuBLAS loaded: %s\n", ver(climseg::cuda::cublas_runtime_version(), 10000, 100).c_str());
#if defined(CLIMSEG_HAVE_CUDNN)
    std::printf("cuDNN loaded: %s\n", ver(static_cast<long>(climseg::cudnn::runtime_version()), 10000, 100).c_str());
#endif
  }
#if defined(CLIMSEG_HAVE_NCCL) && defined(CLIMSEG_HAVE_MPI) && defined(CLIMSEG_HAVE_IO)
  std::printf("NCCL loaded: %s\n", ver(climseg::comm::nccl_runtime_version(), 10000, 100).c_str());
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"climseg: pixel-wise segmentation of extreme weather in climate simulation output"};
  app.require_subcommand(1);

  auto* info = app.add_subcommand("info", "Print the build configuration and the visible devices");

  climseg::apps::DemoOptions demo;
  auto* demo_cmd = app.add_subcommand(
      "demo", "Engine demonstration: plan, bind and train a small network with SGD on generated tensors");
  demo_cmd->add_option("--device", demo.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  demo_cmd->add_option("--batch", demo.batch, "Samples per step")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--height", demo.height, "Field height")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--width", demo.width, "Field width")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--steps", demo.steps, "SGD steps")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--lr", demo.lr, "Learning rate")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--seed", demo.seed, "Seed for data and initialisation");
  demo_cmd->add_flag("--profile", demo.profile, "Print the per-category profile at the end");
  demo_cmd->add_option("--profile-csv", demo.profile_csv, "Also write the profile as CSV to this file");

  climseg::apps::PlanCommand plan;
  climseg::apps::add_plan_command(app, plan);
#if defined(CLIMSEG_HAVE_IO)
  climseg::apps::TrainCommands train;
  climseg::apps::add_train_commands(app, train);
  climseg::apps::PredictCommand predict;
  climseg::apps::add_predict_command(app, predict);
  std::vector<climseg::apps::Subcommand> data_cmds = climseg::apps::add_data_commands(app);
  climseg::apps::EventsCommand events;
  climseg::apps::add_events_command(app, events);
#endif

  CLI11_PARSE(app, argc, argv);
  try {
    if (*info) {
      print_info();
      return 0;
    }
    if (*demo_cmd) return climseg::apps::run_demo(demo);
    if (*plan.cmd) return climseg::apps::run_plan(plan);
#if defined(CLIMSEG_HAVE_IO)
    if (*train.train) return climseg::apps::run_train(train.t);
    if (*train.eval) return climseg::apps::run_eval(train.e);
    if (*predict.cmd) return climseg::apps::run_predict(predict);
    if (*events.cmd) return climseg::apps::run_events(events);
    for (const auto& d : data_cmds)
      if (*d.cmd) return d.run();
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "climseg: error: %s\n", e.what());
#if defined(CLIMSEG_HAVE_IO)
    if (*train.train || *predict.cmd || *events.cmd) climseg::comm::abort_ranks(1);  // the other ranks must not wait for this one
#endif
    return 1;
  }
  return 0;
}
