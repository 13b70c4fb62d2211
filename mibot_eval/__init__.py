"""mibot-eval: the evaluation harness for Xiaomi-Robotics-0 on LIBERO, CALVIN and SimplerEnv."""

__version__ = "0.1.0"
