"""GPU paths of faiss_ops and the report (skipped without a faiss GPU build and a GPU).

Run on a GPU machine with ``pytest -m gpu tests/test_faiss_gpu.py``.
"""

import numpy as np
import pytest

from featlt.cluster.faiss_ops import kmeans, knn, resolve_faiss
from featlt.cluster.splitting import classwise_split
from featlt.data.synthetic import gaussian_classes
from featlt.separability.evaluate import SeparabilityConfig, evaluate_separability

faiss = pytest.importorskip("faiss")
HAS_GPU = "GPU" in faiss.get_compile_options() and faiss.get_num_gpus() > 0
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not HAS_GPU, reason="needs faiss-gpu and a visible CUDA GPU")]


@pytest.fixture(scope="module")
def contexts():
    return resolve_faiss("cuda", threads=1), resolve_faiss("cpu", threads=1)


@pytest.fixture(scope="module")
def data():
    return gaussian_classes(np.array([400, 200, 80, 30, 12]), 32, 3.0, seed=0)


def test_auto_and_cuda_resolve_to_the_gpu(contexts):
    gpu, _ = contexts
    assert gpu.device == "cuda" and gpu.n_gpus >= 1 and gpu.gpu_build
    assert resolve_faiss("auto").device == "cuda"


def test_gpu_knn_matches_cpu(contexts, data):
    gpu, cpu = contexts
    queries = data.X[::7]
    d_gpu, i_gpu = knn(queries, data.X, 5, gpu, block_rows=300)
    d_cpu, i_cpu = knn(queries, data.X, 5, cpu, block_rows=300)
    assert np.allclose(d_gpu, d_cpu, rtol=1e-3, atol=1e-3)
    assert (i_gpu == i_cpu).mean() > 0.99  # ties may order differently


def test_gpu_kmeans_inertia_close_to_cpu(contexts, data):
    gpu, cpu = contexts
    on_gpu = kmeans(data.X, 5, gpu, seed=1)
    on_cpu = kmeans(data.X, 5, cpu, seed=1)
    assert on_gpu.device["device"] == "cuda"
    assert on_gpu.inertia == pytest.approx(on_cpu.inertia, rel=0.01)


def test_gpu_split_and_report_record_the_device(contexts, data):
    gpu, _ = contexts
    split = classwise_split(data.X, data.y, device="cuda")
    assert split.device["device"] == "cuda" and split.sub_labels.shape == data.y.shape
    report = evaluate_separability(data.X, data.y, config=SeparabilityConfig(knn_queries=200),
                                   context=gpu)
    assert report.faiss["device"] == "cuda" and report.split_plan["device"]["device"] == "cuda"
    assert report.scores["knn_balanced_accuracy"] is not None
