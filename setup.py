"""xprompt-jax: prompt tuning, XPrompt and EPT on frozen T5 models in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name="xprompt-jax",
    version="0.1.0",
    description="Prompt tuning, XPrompt and EPT on frozen T5X-compatible T5 models in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["xprompt_jax", "xprompt_jax.*", "tasks", "tasks.*"]),
    package_data={"xprompt_jax": ["gin/*/*.gin"], "tasks": ["demo_vocab.model"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.11",
        "tensorstore>=0.1.65",
        "numpy>=1.26",
        "msgpack>=1.0",
        "safetensors>=0.4",
        "gin-config>=0.5",
        "scipy>=1.10",
        "matplotlib>=3.7",  # XPrompt importance heatmaps (PNG, Agg canvas)
        # TensorBoard event files without TensorFlow: training hosts may lack it.
        "tensorboardX>=2.6",
        # The data side only (task registration, caching); nothing that trains imports these.
        "seqio>=0.0.19",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # TFDS builders import it through etils when they prepare a dataset
    ],
    extras_require={
        # PyTorch (CPU build) and transformers: reference tests against Hugging Face's T5.
        # peft: the exported prompt adapter is loaded by Hugging Face PEFT in a test.
        # nbclient/nbformat/ipykernel: launch/colab.ipynb is executed cell by cell in a kernel.
        "test": ["pytest>=7", "ruff==0.17.6", "torch==2.13.0", "transformers>=4.40", "peft>=0.10",
                 "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
    },
    entry_points={"console_scripts": ["xprompt-jax=xprompt_jax.cli.main:main"]},
)
