from setuptools import find_packages, setup

setup(
    name="wazuhcluster",
    version="0.1.0",  # keep in step with wazuhcluster.__version__,
    description="The Wazuh server cluster rebuilt on Twisted: master and workers over mutual TLS + AMP.",
    python_requires=">=3.10",
    package_dir={"": "."},
    packages=find_packages(include=["wazuhcluster", "wazuhcluster.*"]) + ["twisted.plugins"],
    package_data={"wazuhcluster": ["cluster.json"], "wazuhcluster.web": ["status.html"],
                  "twisted.plugins": ["wazuh_cluster.py"]},
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=24.7",
        "pyOpenSSL>=24.0",
        "service-identity>=24.1",
        "attrs>=23.1",
        "cryptography>=42",
        "psycopg[binary]>=3.1",
        "prometheus_client>=0.20",
    ],
    extras_require={"test": ["hypothesis>=6.100"]},
    entry_points={"console_scripts": ["wazuh-cluster = wazuhcluster.cli:main"]},
)
