"""Write the network workloads under data/workloads/ (Timeloop v0.4 problem YAML, one file per layer).

    python data/workloads/generate.py            # rewrite every file next to this script
    python data/workloads/generate.py --out DIR  # somewhere else

Each network gets a folder with one `<layer>.yaml` per distinct layer and a `network.yaml`
listing the layers in execution order with how often each occurs (`repeats`). Batch N = 1.

Problem shapes:
* `CNN_Layer` (Timeloop's, as in the tl06 reference input): dims C M R S N P Q; Weights[C,M,R,S],
  Inputs[N, C, Wdilation*R + Wstride*P, Hdilation*S + Hstride*Q], Outputs[N,M,Q,P]. Fully
  connected layers are 1x1 convolutions on a 1x1 image (P = Q = R = S = 1).
* `Depthwise_Layer`: dims C R S N P Q, no M and no reduction across channels: Weights[C,R,S],
  Inputs[N, C, Wdilation*R + Wstride*P, Hdilation*S + Hstride*Q], Outputs[N,C,Q,P].
* `Matmul` (BERT GEMMs): dims M N K; Inputs[M,K] (activations), Weights[K,N], Outputs[M,N].

Like Timeloop's problem shapes, padding is not modelled: P and Q are the output sizes of the
padded layer and the Inputs extent follows from P, R and the stride.
"""

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent

CNN_SHAPE = """\
    shape:
        name: CNN_Layer
        dimensions: [C, M, R, S, N, P, Q]
        coefficients:
          - {name: Wstride, default: 1}
          - {name: Hstride, default: 1}
          - {name: Wdilation, default: 1}
          - {name: Hdilation, default: 1}
        data_spaces:
          - name: Weights
            projection: [[[C]], [[M]], [[R]], [[S]]]
            read_write: false
          - name: Inputs
            projection: [[[N]], [[C]], [[R, Wdilation], [P, Wstride]], [[S, Hdilation], [Q, Hstride]]]
            read_write: false
          - name: Outputs
            projection: [[[N]], [[M]], [[Q]], [[P]]]
            read_write: true
"""

DEPTHWISE_SHAPE = """\
    shape:
        name: Depthwise_Layer
        dimensions: [C, R, S, N, P, Q]
        coefficients:
          - {name: Wstride, default: 1}
          - {name: Hstride, default: 1}
          - {name: Wdilation, default: 1}
          - {name: Hdilation, default: 1}
        data_spaces:
          - name: Weights
            projection: [[[C]], [[R]], [[S]]]
            read_write: false
          - name: Inputs
            projection: [[[N]], [[C]], [[R, Wdilation], [P, Wstride]], [[S, Hdilation], [Q, Hstride]]]
            read_write: false
          - name: Outputs
            projection: [[[N]], [[C]], [[Q]], [[P]]]
            read_write: true
"""

MATMUL_SHAPE = """\
    shape:
        name: Matmul
        dimensions: [M, N, K]
        coefficients: []
        data_spaces:
          - name: Weights
            projection: [[[K]], [[N]]]
            read_write: false
          - name: Inputs
            projection: [[[M]], [[K]]]
            read_write: false
          - name: Outputs
            projection: [[[M]], [[N]]]
            read_write: true
"""


def conv(name, C, M, RS, PQ, stride=1, repeats=1):
    """A square convolution layer: C in, M out channels, RS x RS kernel, PQ x PQ outputs."""
    return {"name": name, "kind": "conv", "repeats": repeats,
            "instance": {"C": C, "M": M, "R": RS, "S": RS, "N": 1, "P": PQ, "Q": PQ,
                         "Wstride": stride, "Hstride": stride, "Wdilation": 1, "Hdilation": 1}}


def fc(name, C, M, repeats=1):
    return conv(name, C, M, 1, 1, 1, repeats)


def depthwise(name, C, RS, PQ, stride=1, repeats=1):
    return {"name": name, "kind": "depthwise", "repeats": repeats,
            "instance": {"C": C, "R": RS, "S": RS, "N": 1, "P": PQ, "Q": PQ,
                         "Wstride": stride, "Hstride": stride, "Wdilation": 1, "Hdilation": 1}}


def matmul(name, M, N, K, repeats=1):
    return {"name": name, "kind": "matmul", "repeats": repeats, "instance": {"M": M, "N": N, "K": K}}


def alexnet():
    """torchvision's AlexNet (one tower, no groups), 224x224 input."""
    return [conv("conv1", 3, 64, 11, 55, 4), conv("conv2", 64, 192, 5, 27), conv("conv3", 192, 384, 3, 13),
            conv("conv4", 384, 256, 3, 13), conv("conv5", 256, 256, 3, 13),
            fc("fc6", 256 * 6 * 6, 4096), fc("fc7", 4096, 4096), fc("fc8", 4096, 1000)]


def vgg16():
    """VGG-16 (configuration D), 224x224 input, 3x3 convolutions with padding 1."""
    layers, c = [], 3
    for stage, (m, n, pq) in enumerate([(64, 2, 224), (128, 2, 112), (256, 3, 56), (512, 3, 28), (512, 3, 14)], 1):
        for i in range(1, n + 1):
            layers.append(conv(f"conv{stage}_{i}", c, m, 3, pq))
            c = m
    return layers + [fc("fc6", 512 * 7 * 7, 4096), fc("fc7", 4096, 4096), fc("fc8", 4096, 1000)]


def resnet50():
    """ResNet-50 v1.5 (torchvision: stride 2 in the 3x3 of each stage's first block), 224x224 input.
    Blocks 2..n of a stage are identical and listed once with repeats n-1."""
    layers = [conv("conv1", 3, 64, 7, 112, 2)]
    c = 64
    for stage, (width, n, pq) in enumerate([(64, 3, 56), (128, 4, 28), (256, 6, 14), (512, 3, 7)], 2):
        out, s = 4 * width, 1 if stage == 2 else 2
        in_pq = pq * s
        p = f"res{stage}"
        layers += [conv(f"{p}a_branch2a", c, width, 1, in_pq), conv(f"{p}a_branch2b", width, width, 3, pq, s),
                   conv(f"{p}a_branch2c", width, out, 1, pq), conv(f"{p}a_branch1", c, out, 1, pq, s)]
        layers += [conv(f"{p}x_branch2a", out, width, 1, pq, repeats=n - 1),
                   conv(f"{p}x_branch2b", width, width, 3, pq, repeats=n - 1),
                   conv(f"{p}x_branch2c", width, out, 1, pq, repeats=n - 1)]
        c = out
    return layers + [fc("fc1000", 2048, 1000)]


def mobilenet_v2():
    """MobileNetV2 (width 1.0), 224x224 input: inverted residual blocks (expansion t, output c,
    n blocks, first stride s); blocks 2..n of a group are identical and listed once."""
    layers = [conv("conv1", 3, 32, 3, 112, 2)]
    c, pq = 32, 112
    for g, (t, out, n, s) in enumerate([(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)], 1):
        for first in (True, False):
            reps = 1 if first else n - 1
            if reps == 0:
                continue
            cin, stride, ipq = (c, s, pq) if first else (out, 1, pq // s)
            opq = ipq // stride
            tag = f"block{g}_{'1' if first else 'x'}"
            hidden = cin * t
            if t != 1:
                layers.append(conv(f"{tag}_expand", cin, hidden, 1, ipq, repeats=reps))
            layers.append(depthwise(f"{tag}_dw", hidden, 3, opq, stride, repeats=reps))
            layers.append(conv(f"{tag}_project", hidden, out, 1, opq, repeats=reps))
        c, pq = out, pq // s
    return layers + [conv("conv_last", 320, 1280, 1, 7), fc("fc", 1280, 1000)]


def bert_base(seq=512, layers=12, hidden=768, heads=12, ffn=3072):
    """The GEMMs of BERT-base's encoder (sequence 512, batch 1): per layer the Q, K and V
    projections, per head QK^T and (scores)V, the attention output projection and the FFN."""
    d = hidden // heads
    return [matmul("qkv_proj", seq, hidden, hidden, 3 * layers),
            matmul("attn_scores", seq, seq, d, heads * layers),
            matmul("attn_context", seq, d, seq, heads * layers),
            matmul("attn_out_proj", seq, hidden, hidden, layers),
            matmul("ffn_up", seq, ffn, hidden, layers),
            matmul("ffn_down", seq, hidden, ffn, layers)]


NETWORKS = {
    "alexnet": (alexnet, "AlexNet as in torchvision (Krizhevsky et al. 2012, single tower)"),
    "vgg16": (vgg16, "VGG-16, configuration D (Simonyan & Zisserman 2015)"),
    "resnet50": (resnet50, "ResNet-50 v1.5 as in torchvision (He et al. 2016)"),
    "mobilenet_v2": (mobilenet_v2, "MobileNetV2, width 1.0 (Sandler et al. 2018)"),
    "bert_base": (bert_base, "BERT-base encoder GEMMs, sequence length 512 (Devlin et al. 2019)"),
}
SHAPES = {"conv": CNN_SHAPE, "depthwise": DEPTHWISE_SHAPE, "matmul": MATMUL_SHAPE}


def layer_yaml(net, layer):
    inst = ", ".join(f"{k}: {v}" for k, v in layer["instance"].items())
    return (f"# {net}/{layer['name']}: generated by data/workloads/generate.py\n"
            f"problem:\n    version: '0.4'\n{SHAPES[layer['kind']]}"
            f"    instance: {{{inst}}}\n")


def macs(layer):
    n = 1
    for k, v in layer["instance"].items():
        if k in ("C", "M", "R", "S", "N", "P", "Q", "K"):
            n *= v
    return n


def network_yaml(net, description, layers):
    total = sum(macs(x) * x["repeats"] for x in layers)
    lines = [f"# {description}. Generated by data/workloads/generate.py.",
             f"# {sum(x['repeats'] for x in layers)} layers in all, {total:,} MACs per inference.",
             f"network: {net}", "layers:"]
    lines += [f"  - {{name: {x['name']}, file: {x['name']}.yaml, repeats: {x['repeats']}}}" for x in layers]
    return "\n".join(lines) + "\n"


def generate(out=HERE):
    """Write every network folder under `out`; returns the paths written."""
    written = []
    for net, (fn, description) in NETWORKS.items():
        folder = Path(out) / net
        folder.mkdir(parents=True, exist_ok=True)
        layers = fn()
        names = [x["name"] for x in layers]
        assert len(set(names)) == len(names), f"{net}: duplicate layer names"
        for layer in layers:
            path = folder / f"{layer['name']}.yaml"
            path.write_text(layer_yaml(net, layer))
            written.append(path)
        path = folder / "network.yaml"
        path.write_text(network_yaml(net, description, layers))
        written.append(path)
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="folder to write the network folders into")
    print(f"wrote {len(generate(ap.parse_args().out))} files")
