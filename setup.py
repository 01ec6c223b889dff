"""Packaging: the folders harness/, checks/ and reports/ install as ONE import package.

    harness/lora_harness/          -> lora_harness   (and every sub-package found under it)
    checks/lora_harness/checks/    -> lora_harness.checks
    reports/lora_harness/reports/  -> lora_harness.reports

Every source path ends in its import name, so editors and static tools that read the tree
(with harness/, checks/ and reports/ as source roots) follow the imports as Python does.

A distinctive import name means a user's own `checks`, `reports` or `harness` package never
shadows ours, nor ours theirs. Sub-packages are discovered, never listed, so a new folder
cannot be left out of the wheel (tests/test_packaging.py builds and installs it to prove it).
"""

from setuptools import find_packages, setup

ROOTS = {
    "lora_harness": "harness/lora_harness",
    "lora_harness.checks": "checks/lora_harness/checks",
    "lora_harness.reports": "reports/lora_harness/reports",
}


def discover() -> list[str]:
    packages = []
    for name, folder in ROOTS.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(folder)]
    return packages


setup(
    packages=discover(),
    package_dir=ROOTS,
    package_data={"lora_harness.reports": ["*.json", "templates/*.j2"]},
)
