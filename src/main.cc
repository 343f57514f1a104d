// sluice: the broker process. Placeholder main until the broker core lands (see src/broker.h).
#include <cstdio>

int main(int argc, char** argv) { return 0; }
