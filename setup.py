"""Packaging that pyproject.toml cannot say: conf/, at the top of the checkout, travels in
the wheel as the package bnexp.conf (bnexp/config.py: CONF_DIR finds it in either place)."""
from setuptools import find_namespace_packages, setup

code = find_namespace_packages(include=["bnexp*", "hydra_plugins*"], exclude=["*__pycache__*"])
configs = ["bnexp.conf"] + [f"bnexp.conf.{p}" for p in find_namespace_packages("conf")]
setup(packages=code + configs,  # hydra_plugins: the SLURM launcher (Hydra looks only there)
      package_dir={"bnexp.conf": "conf"},
      package_data={**{p: ["*.yaml"] for p in configs},
                    "bnexp.nn.norm.kernels": ["*.cc"]})  # built on the machine that runs it
