// The plugin's entry point: one exported symbol carrying the SDK ABI version.
#include "example.h"

SPARTA_PLUGIN("example_cross_lr", example::NewCrossLr, example::NewCsvReader)
