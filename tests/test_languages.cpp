// The language table (openai's LANGUAGES and TO_LANGUAGE_CODE) and the
// lookup of what a user types for --language.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "text/languages.h"
#include "text/tokenizer.h"

namespace ama {
namespace {

TEST(Languages, SameCodesInTheSameOrderAsTheTokenizer) {
  const auto& codes = Tokenizer::language_codes();
  const auto& table = languages();
  ASSERT_EQ(table.size(), 100u);
  ASSERT_EQ(table.size(), codes.size());
  for (size_t i = 0; i < table.size(); ++i) EXPECT_EQ(table[i].code, codes[i]) << "index " << i;
}

TEST(Languages, NamesAreUniqueLowerCaseAndMatchOpenai) {
  std::set<std::string_view> names;
  for (const auto& l : languages()) {
    EXPECT_TRUE(names.insert(l.name).second) << l.name;
    for (char c : l.name) EXPECT_FALSE(c >= 'A' && c <= 'Z') << l.name;
  }
  EXPECT_EQ(languages().front().name, "english");
  EXPECT_EQ(languages()[29].name, "norwegian");
  EXPECT_EQ(languages()[80].name, "haitian creole");
  EXPECT_EQ(languages().back().name, "cantonese");
  EXPECT_EQ(language_name("en"), "english");
  EXPECT_EQ(language_name("haw"), "hawaiian");
  EXPECT_EQ(language_name("jw"), "javanese");
  EXPECT_EQ(language_name("xx"), "");
  EXPECT_EQ(language_name(""), "");
}

TEST(Languages, CodesAndNamesInAnyCase) {
  for (const char* in : {"en", "EN", "En", "english", "English", "ENGLISH", "  english "}) {
    auto r = language_code_from_user(in);
    ASSERT_TRUE(r.ok()) << in << ": " << r.message();
    EXPECT_EQ(*r, "en") << in;
  }
  EXPECT_EQ(*language_code_from_user("Haitian Creole"), "ht");
  EXPECT_EQ(*language_code_from_user("yue"), "yue");
  EXPECT_EQ(*language_code_from_user("Cantonese"), "yue");
  for (const auto& l : languages()) {
    EXPECT_EQ(*language_code_from_user(l.code), l.code);
    EXPECT_EQ(*language_code_from_user(l.name), l.code);
  }
}

TEST(Languages, OpenaiAliases) {
  const std::pair<const char*, const char*> aliases[] = {
      {"burmese", "my"}, {"valencian", "ca"}, {"flemish", "nl"},  {"haitian", "ht"},
      {"letzeburgesch", "lb"}, {"pushto", "ps"}, {"panjabi", "pa"}, {"moldavian", "ro"},
      {"moldovan", "ro"}, {"sinhalese", "si"}, {"Castilian", "es"}, {"MANDARIN", "zh"},
  };
  for (const auto& [name, code] : aliases) {
    auto r = language_code_from_user(name);
    ASSERT_TRUE(r.ok()) << name << ": " << r.message();
    EXPECT_EQ(*r, code) << name;
  }
}

TEST(Languages, AutoPassesThrough) {
  EXPECT_EQ(*language_code_from_user("auto"), "auto");
  EXPECT_EQ(*language_code_from_user("AUTO"), "auto");
  EXPECT_EQ(*language_code_from_user(""), "auto");
}

TEST(Languages, UnknownIsAClearError) {
  for (const char* in : {"xx", "klingon", "e", "englishh", "en-US", "zz zz"}) {
    auto r = language_code_from_user(in);
    ASSERT_FALSE(r.ok()) << in;
    EXPECT_NE(r.message().find(std::string("'") + in + "'"), std::string::npos) << r.message();
    EXPECT_NE(r.message().find("en zh de es"), std::string::npos) << r.message();
    EXPECT_NE(r.message().find("yue"), std::string::npos) << r.message();
  }
}

TEST(Languages, TableText) {
  const std::string t = language_table_text();
  EXPECT_EQ(t.rfind("en   english\nzh   chinese\n", 0), 0u) << t.substr(0, 60);
  EXPECT_NE(t.find("\nhaw  hawaiian\n"), std::string::npos);
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 100);
}

}  // namespace
}  // namespace ama
