#!/usr/bin/env python3
"""PyTorch peer of the device kit: CANet-MobileNetV2 written from /work/shared/NETWORK.md (docs: bench/device/README.md).

The same structure and parameter names as our engine's (those of the public re-implementation,
zh320/realtime-semantic-segmentation-pytorch models/canet.py): 4,774,186 parameters with 19 classes
and the compatible head, asserted. Times fp32 eager (channels-last, cudnn.benchmark on, TF32 off
so it is the same arithmetic as ours), the same with PyTorch's default TF32 convolutions, and
torch.compile where it works without downloads, with CUDA events after warm-up, at the sizes and
batches the kit gives ours; writes one JSON file.

  python3 torch_canet.py --json OUT.json [--cases infer:1024x512:1,train:512x256:8] [--iters 20] [--budget-s 150]
  python3 torch_canet.py --count-only     # parameter count and names; needs no torch (a shape walk)

The modules are written against a tiny `nn` namespace: torch.nn when torch imports, else a
shape-recording stand-in (ShapeNN below) that builds the same module tree without tensors, so the
parameter count and names are checked on a machine with no PyTorch too.
"""
import argparse
import json
import math
import sys
import time
from collections import OrderedDict

EXPECTED_PARAMETERS = 4_774_186
CLASSES = 19

try:  # PyTorch is on the GPU machine; the shape walk below needs none.
    import torch
    import torch.nn as torch_nn
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 (any import failure means: no torch)
    torch = None
    TORCH_IMPORT_ERROR = f'{type(e).__name__}: {e}'
else:
    TORCH_IMPORT_ERROR = None


class ShapeNN:
    """Stand-in for torch.nn: modules record their parameters' shapes (and buffers' names), nothing more."""

    class Module:
        def __init__(self):
            object.__setattr__(self, '_modules', OrderedDict())
            object.__setattr__(self, '_params', OrderedDict())
            object.__setattr__(self, '_buffers', OrderedDict())

        def __setattr__(self, name, value):
            if isinstance(value, ShapeNN.Module):
                self._modules[name] = value
            object.__setattr__(self, name, value)

        def add_module(self, name, module):
            self._modules[name] = module

        def named_parameters(self, prefix=''):
            for n, shape in self._params.items():
                yield prefix + n, shape
            for name, m in self._modules.items():
                yield from m.named_parameters(prefix + name + '.')

        def state_dict_names(self, prefix=''):
            for n in list(self._params) + list(self._buffers):
                yield prefix + n
            for name, m in self._modules.items():
                yield from m.state_dict_names(prefix + name + '.')

    class Sequential(Module):
        def __init__(self, *mods):
            super().__init__()
            if len(mods) == 1 and isinstance(mods[0], OrderedDict):
                for k, m in mods[0].items():
                    self.add_module(k, m)
            else:
                for i, m in enumerate(mods):
                    self.add_module(str(i), m)

    class Conv2d(Module):
        def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, bias=True):
            super().__init__()
            self._params['weight'] = (cout, cin // groups, k, k)
            if bias:
                self._params['bias'] = (cout,)

    class ConvTranspose2d(Module):
        def __init__(self, cin, cout, k, stride=1, padding=0, output_padding=0, bias=True):
            super().__init__()
            self._params['weight'] = (cin, cout, k, k)
            if bias:
                self._params['bias'] = (cout,)

    class BatchNorm2d(Module):
        def __init__(self, c, eps=1e-5, momentum=0.1):
            super().__init__()
            self._params['weight'] = (c,)
            self._params['bias'] = (c,)
            for b in ('running_mean', 'running_var', 'num_batches_tracked'):
                self._buffers[b] = None

    class Linear(Module):
        def __init__(self, cin, cout, bias=True):
            super().__init__()
            self._params['weight'] = (cout, cin)
            if bias:
                self._params['bias'] = (cout,)

    class _NoParams(Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    ReLU = ReLU6 = Sigmoid = _NoParams


def build(nn):
    """The CANet-MobileNetV2 module classes over `nn` (torch.nn or ShapeNN); returns the model class."""

    def cbr(cin, cout, k, stride=1, act='relu', groups=1):
        """Conv(k, stride, pad (k-1)/2, no bias) -> BN -> act, named .0 .1 (.2) as torchvision's Conv2dNormActivation."""
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        layers.append({'relu': nn.ReLU, 'relu6': nn.ReLU6, 'sigmoid': nn.Sigmoid}[act]())
        return nn.Sequential(*layers)

    class DBR(nn.Module):
        """ConvTranspose2d(k 2s-1, stride s, pad s-1, output_padding s-1, bias) -> BN -> ReLU: exactly s times larger."""

        def __init__(self, cin, cout, scale):
            super().__init__()
            self.up_conv = nn.Sequential(
                nn.ConvTranspose2d(cin, cout, 2 * scale - 1, scale, scale - 1, output_padding=scale - 1, bias=True),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            )

        def forward(self, x):
            return self.up_conv(x)

    class InvertedResidual(nn.Module):
        """torchvision's block and names: conv = [expand cbr] + depthwise cbr + 1x1 projection + BN."""

        def __init__(self, inp, oup, stride, t):
            super().__init__()
            hidden = inp * t
            layers = [cbr(inp, hidden, 1, act='relu6')] if t != 1 else []
            layers += [cbr(hidden, hidden, 3, stride, act='relu6', groups=hidden), nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
            self.conv = nn.Sequential(*layers)
            self.use_res = stride == 1 and inp == oup

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(nn.Module):
        """torchvision mobilenet_v2 features[0:18] split as layer1..4 = [0:4], [4:7], [7:14], [14:18], keeping the block indices."""

        def __init__(self):
            super().__init__()
            features = [cbr(3, 32, 3, 2, act='relu6')]
            inp = 32
            for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
                for i in range(n):
                    features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            cuts = [0, 4, 7, 14, 18]
            for li in range(4):
                self.add_module(f'layer{li + 1}', nn.Sequential(OrderedDict((str(j), features[j]) for j in range(cuts[li], cuts[li + 1]))))

        def forward(self, x):
            x4 = self.layer1(x)
            x8 = self.layer2(x4)
            x16 = self.layer3(x8)
            x32 = self.layer4(x16)
            return x16, x32

    class ContextBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = MobileNetV2()
            self.up1 = DBR(320, 192, 2)
            self.up2 = DBR(192 + 96, 256, 2)

        def forward(self, x):
            x16, x32 = self.backbone(x)
            return self.up2(torch.cat([self.up1(x32), x16], dim=1))

    class ChannelAttention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.fc = nn.Linear(c, c)

        def forward(self, x):
            mx = torch.amax(x, dim=(2, 3))
            av = torch.mean(x, dim=(2, 3))
            return torch.sigmoid(self.fc(mx) + self.fc(av))[:, :, None, None]

    class FCA(nn.Module):
        def __init__(self, c, classes):
            super().__init__()
            self.conv_init = cbr(2 * c, c, 3)
            self.sa = nn.Sequential(cbr(c, 1, 3, act='sigmoid'))
            self.ca = ChannelAttention(c)
            self.conv_last = cbr(c, classes, 3)  # the compatible head: BN + ReLU on the logits

        def forward(self, s, x):
            f = self.conv_init(torch.cat([s, x], dim=1))
            y = f * self.sa(s) * self.ca(x) + f
            return self.conv_last(y)

    class CANet(nn.Module):
        def __init__(self, classes=CLASSES):
            super().__init__()
            self.spatial_branch = nn.Sequential(cbr(3, 64, 3, 2), cbr(64, 128, 3, 2), cbr(128, 256, 3, 2))
            self.context_branch = ContextBranch()
            self.fca = FCA(256, classes)
            self.up = DBR(classes, classes, 8)

        def forward(self, x):
            return self.up(self.fca(self.spatial_branch(x), self.context_branch(x)))

    return CANet


def shape_walk():
    """Parameter count and state_dict names of the model built over ShapeNN (no torch needed)."""
    model = build(ShapeNN)()
    params = list(model.named_parameters())
    count = sum(math.prod(shape) for _, shape in params)
    return count, [n for n, _ in params], list(model.state_dict_names()), dict(params)


def parse_cases(text):
    cases = []
    for item in text.split(','):
        mode, size, batch = item.split(':')
        w, h = (int(v) for v in size.split('x'))
        assert mode in ('infer', 'train'), item
        cases.append({'mode': mode, 'size': [w, h], 'batch': int(batch)})
    return cases


def time_cuda(fn, iters, warmup):
    """Median/min/max ms of `fn` over `iters` runs, each between CUDA events and synchronised, after `warmup` runs."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {'medianMs': times[len(times) // 2], 'minMs': times[0], 'maxMs': times[-1], 'iterations': iters}


def time_cpu(fn, iters, warmup):
    """time_cuda's protocol on the CPU (--device cpu: a smoke test of this script where there is no GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {'medianMs': times[len(times) // 2], 'minMs': times[0], 'maxMs': times[-1], 'iterations': iters}


def run_case(CANet, case, variant, iters, dev):
    """One case in one variant: 'eager' (fp32, TF32 off), 'eager-tf32' (PyTorch's default TF32 convs), 'compile'."""
    tf32 = variant == 'eager-tf32'
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(1)
    w, h = case['size']
    n = case['batch']
    model = CANet().to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(n, 3, h, w, device=dev).to(memory_format=torch.channels_last)
    labels = (torch.arange(n * h * w, device=dev) * 7 % CLASSES).reshape(n, h, w)
    fn_model = torch.compile(model) if variant == 'compile' else model
    t0 = time.perf_counter()
    if case['mode'] == 'infer':
        model.eval()

        def once():
            with torch.inference_mode():
                fn_model(x)
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
        loss_fn = torch_nn.CrossEntropyLoss(ignore_index=255)

        def once():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(fn_model(x), labels)
            loss.backward()
            opt.step()
    cuda = dev.type == 'cuda'
    once()
    if cuda:
        torch.cuda.synchronize()
    first_ms = (time.perf_counter() - t0) * 1000
    t = (time_cuda if cuda else time_cpu)(once, iters, warmup=3 if cuda else 1)
    with torch.inference_mode():
        model.eval()
        shape = list(model(x[:1]).shape)
    assert shape == [1, CLASSES, h, w], f'output {shape}, expected {[1, CLASSES, h, w]}'
    out = {**case, 'variant': variant, 'firstMs': first_ms, **t, 'imagesPerSecond': n * 1000 / t['medianMs'],
           'peakGpuBytes': torch.cuda.max_memory_allocated() if cuda else None}
    del model, x, labels
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--json', help='where to write the results')
    p.add_argument('--cases', default='infer:1024x512:1,infer:1024x512:4,infer:2048x1024:1,infer:2048x1024:4,train:512x256:8,train:1024x512:8')
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--budget-s', type=float, default=150, help='torch.compile cases start only while the run is under this many seconds')
    p.add_argument('--no-compile', action='store_true')
    p.add_argument('--device', default='cuda', help="'cpu': a smoke test of this script on a machine with torch and no GPU")
    p.add_argument('--count-only', action='store_true', help='print the parameter count (shape walk; with torch, also of the torch model) and exit')
    p.add_argument('--names', action='store_true', help='with --count-only: print the parameter shapes and state_dict names too')
    args = p.parse_args()

    count, names, state_names, shapes = shape_walk()
    assert count == EXPECTED_PARAMETERS, f'shape walk: {count} parameters, expected {EXPECTED_PARAMETERS}'
    if args.count_only:
        doc = {'parameters': count, 'parameterTensors': len(names), 'stateDictEntries': len(state_names)}
        if torch is not None:
            m = build(torch_nn)()
            doc['torchParameters'] = sum(q.numel() for q in m.parameters())
            doc['torchNamesMatch'] = [n for n, _ in m.named_parameters()] == names and list(m.state_dict()) == state_names
            assert doc['torchParameters'] == EXPECTED_PARAMETERS and doc['torchNamesMatch'], doc
        else:
            doc['torch'] = f'not importable ({TORCH_IMPORT_ERROR}): shape walk only'
        if args.names:
            doc['parameterShapes'] = {n: list(shape) for n, shape in shapes.items()}
            doc['stateDict'] = state_names
        print(json.dumps(doc, indent=1 if args.names else None))
        return 0

    t_start = time.perf_counter()
    doc = {'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'python': sys.version.split()[0], 'parameters': count, 'results': [], 'errors': []}

    def write():
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(doc, f, indent=2)
                f.write('\n')

    if torch is None:
        doc['error'] = f'torch not importable: {TORCH_IMPORT_ERROR}'
        write()
        print(f'torch_canet: {doc["error"]}', file=sys.stderr)
        return 2
    if args.device == 'cuda' and not torch.cuda.is_available():
        doc['error'] = f'torch {torch.__version__}: CUDA is not available'
        write()
        print(f'torch_canet: {doc["error"]}', file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    CANet = build(torch_nn)
    tcount = sum(q.numel() for q in CANet().parameters())
    assert tcount == EXPECTED_PARAMETERS, f'torch model: {tcount} parameters, expected {EXPECTED_PARAMETERS}'
    doc.update({'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
                'gpu': torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu', 'channelsLast': True, 'cudnnBenchmark': True})
    print(f'torch {torch.__version__} CUDA {torch.version.cuda} cuDNN {doc["cudnn"]} on {doc["gpu"]}; CANet-MobileNetV2 {tcount} parameters')
    cases = parse_cases(args.cases)
    variants = ['eager', 'eager-tf32'] + ([] if args.no_compile else ['compile'])
    compile_broken = None
    for variant in variants:
        # torch.compile: the inference cases first (a training step's compile, backward included, is the long one).
        for case in sorted(cases, key=lambda c: c['mode'] != 'infer') if variant == 'compile' else cases:
            name = f'{variant} {case["mode"]} {case["size"][0]}x{case["size"][1]} b{case["batch"]}'
            if variant == 'compile':
                if compile_broken:
                    continue
                if time.perf_counter() - t_start > args.budget_s:
                    doc['errors'].append({'case': name, 'error': f'skipped: over the {args.budget_s} s budget'})
                    continue
            try:
                r = run_case(CANet, case, variant, args.iters, dev)
            except Exception as e:  # noqa: BLE001 (report it, keep the run going)
                msg = f'{type(e).__name__}: {str(e)[:2000]}'
                doc['errors'].append({'case': name, 'error': msg})
                print(f'{name}: FAILED {msg}', file=sys.stderr)
                if variant == 'compile':
                    compile_broken = msg  # the same failure would repeat on every case
                torch.cuda.empty_cache()
                continue
            doc['results'].append(r)
            print(f'{name:34s} first {r["firstMs"]:9.0f} ms  median {r["medianMs"]:8.2f} ms  min {r["minMs"]:8.2f}  {r["imagesPerSecond"]:8.1f} img/s')
            write()
    doc['seconds'] = time.perf_counter() - t_start
    write()
    return 0 if any(r['variant'] == 'eager' for r in doc['results']) else 1


if __name__ == '__main__':
    sys.exit(main())
