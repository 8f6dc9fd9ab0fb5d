import os, random
random.seed(5)
open('weft.toml','w').write('[packages]\n')
N=24
for i in range(N):
    d=f'lib{i}'
    os.makedirs(d, exist_ok=True)
    deps=[f'//lib{j}:lib{j}' for j in sorted(random.sample(range(i), min(i, random.randint(0,2))))]
    srcs=[]
    for k in range(3):
        name=f'f{k}.c'
        srcs.append(name)
        body=f'#include "lib{i}.h"\n'
        # some compile work
        body+=''.join(f'static int g{k}_{m}(int x){{ return x*{m}+{k}; }}\n' for m in range(400))
        body+=f'int lib{i}_f{k}(int x){{ int s=0; for(int m=0;m<x;m++) s+=g{k}_1(m); return s; }}\n'
        open(f'{d}/{name}','w').write(body)
    open(f'{d}/lib{i}.h','w').write(f'int lib{i}_f0(int);\n')
    open(f'{d}/BUILD','w').write(f'''cc_library(
    name = "lib{i}",
    srcs = {srcs!r},
    hdrs = ["lib{i}.h"],
    deps = {deps!r},
    copts = ["-O2"],
)
'''.replace("'",'"'))
for b in range(4):
    d=f'app{b}'
    os.makedirs(d, exist_ok=True)
    libs=sorted(random.sample(range(N), 4))
    inc=''.join(f'#include "lib{j}/lib{j}.h"\n' for j in libs)
    open(f'{d}/main.c','w').write(inc+'int main(void){ return '+'+'.join(f'lib{j}_f0(1)' for j in libs)+'; }\n')
    deps=[f'//lib{j}:lib{j}' for j in libs]
    open(f'{d}/BUILD','w').write(f'''cc_binary(
    name = "app{b}",
    srcs = ["main.c"],
    deps = {deps!r},
)
'''.replace("'",'"'))
