"""reducecnn: the 'reduce CNN parameters' MNIST study as a seeded, distributed Ray batch job."""

__version__ = "0.7.1"


def benchmark(**fields):
    """Run a benchmark from Python and return its runs table (see reducecnn.api.benchmark)."""
    from reducecnn.api import benchmark as run  # `import reducecnn` stays light: Ray workers import it

    return run(**fields)


def load_runs(*folders):
    """The runs tables of one or several results folders as one DataFrame (reducecnn.api.load_runs)."""
    from reducecnn.api import load_runs as load  # (see benchmark)

    return load(*folders)
