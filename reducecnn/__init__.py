"""reducecnn: the 'reduce CNN parameters' MNIST study as a seeded, distributed Ray batch job."""

__version__ = "0.4.0"
