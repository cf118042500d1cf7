#line 1 "rewrite_fixture.cu"
// Input of the ctest cudasim_rewrite (kernels/cudasim/rewrite_cu.py): rewritten, it must equal
// rewrite_fixture.expected.cpp. Not compiled. A comment with k<<<1, 2>>>(x) stays as it is.
const char* s = "k<<<1,2>>>()";
template <class T, int N> __global__ void __launch_bounds__(N, 2) kern(T* p /* { */, int n) { ::cudasim::check_launch_bounds(N, 2);
  p[0] = n;
}
__global__ void __launch_bounds__(128) decl_only(int);
void f(float* p, cudaStream_t st) {
  ::cudasim::launch((ns::kern<float, 64>), "ns::kern<float, 64>", dim3(2, 3), std::min<int>(64, 32), 0, st)
 (p, (1 >> 1));
  ::cudasim::launch((kern<float, (3 > 2 ? 64 : 32)>), "kern<float, (3 > 2 ? 64 : 32)>", 1, 64)(p, 1);
  ::cudasim::launch((plain), "plain", g(1, 2), 32)();
}
