import pathlib
import sys

# Tests import the checkout they live in, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
