// Compiler portability: the same headers compile in host C++ and in nvcc translation units.
#pragma once

#if defined(__CUDACC__)
#define PGOLF_HD __host__ __device__
#else
#define PGOLF_HD
#endif
